"""The user-facing client: Client, Future, as_completed, wait, dask integration."""
