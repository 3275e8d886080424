"""tests/integration/programs: whole programs of the kind people run with dask.distributed,
run on shoal, each checked against dask's local scheduler (``scheduler="sync"``) or plain
pandas/numpy. They use the integration tests' fixtures: the shared session ``client`` (2
single-threaded workers; programs leave it healthy) and ``make_client`` for the programs
that restart a cluster, kill workers or need workers with resources."""
