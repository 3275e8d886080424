"""The user-facing client: Client, Future, as_completed, wait, dask integration.

``shoal.client.ClosedClientError`` and ``shoal.client.FutureCancelledError`` are dask's
``distributed.client`` names.
"""

from shoal.protocol._errors import ClosedClientError, FutureCancelledError

__all__ = ["ClosedClientError", "FutureCancelledError"]
