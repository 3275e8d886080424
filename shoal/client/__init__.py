"""The user-facing client: Client, Future, as_completed, wait, dask integration.

``shoal.client.ClosedClientError``, ``shoal.client.FutureCancelledError`` and
``shoal.client.WorkerStartTimeoutError`` are dask's ``distributed.client`` names.
"""

from shoal.protocol._errors import (
    ClosedClientError,
    FutureCancelledError,
    WorkerStartTimeoutError,
)

__all__ = ["ClosedClientError", "FutureCancelledError", "WorkerStartTimeoutError"]
