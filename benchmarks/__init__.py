"""shoal against dask.distributed, side by side, in one run on one machine.

``python -m benchmarks`` (or ``make bench``) runs every workload on shoal and on
dask.distributed, each run in a fresh subprocess with the same parameters, and writes
``benchmarks/RESULTS.md``. The short workloads run up to three times per system, alternating
the systems, and the table shows each figure's median and how far apart the runs were
(``--repeat N`` sets the runs per system). ``python -m benchmarks --help`` lists the options.

Layout:

- ``_spec.py``      the workloads: parameters per size, metrics, targets (pure data)
- ``_repeat.py``    the alternating order of repeated runs, medians and spreads (pure)
- ``_report.py``    merging runs, ratios, target checks, table formatting (pure functions)
- ``_cli.py``       argument parsing and the parent process that runs the children
- ``_child.py``     the subprocess entry point: one workload on one system
- ``_workloads.py`` the workload bodies, written once against the common futures API
- ``_tasks.py``     the tiny task functions the workers import
- ``_data.py``      the HDF5 file of the persist workload
- ``_machine.py``   versions, CPU model, core count for the report
- ``_watched.py``   the dashboard workload: maps with chromium on /status against about:blank
- ``_browser.py``   headless chromium for the dashboard workload
"""
