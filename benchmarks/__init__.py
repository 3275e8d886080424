"""shoal against dask.distributed, side by side, in one run on one machine.

``python -m benchmarks`` (or ``make bench``) runs every workload twice, once on shoal and once on
dask.distributed, each in a fresh subprocess with the same parameters, and writes
``benchmarks/RESULTS.md``. ``python -m benchmarks --help`` lists the options.

Layout:

- ``_spec.py``      the workloads: parameters per size, metrics, targets (pure data)
- ``_report.py``    ratios, target checks, table formatting (pure functions)
- ``_cli.py``       argument parsing and the parent process that runs the children
- ``_child.py``     the subprocess entry point: one workload on one system
- ``_workloads.py`` the workload bodies, written once against the common futures API
- ``_tasks.py``     the tiny task functions the workers import
- ``_data.py``      the HDF5 file of the persist workload
- ``_machine.py``   versions, CPU model, core count for the report
- ``_browser.py``   headless chromium for the dashboard variant
"""
