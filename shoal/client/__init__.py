"""The user-facing client: Client, Future, as_completed, wait, dask integration.

``shoal.client.ClosedClientError`` is dask's ``distributed.client.ClosedClientError``.
"""

from shoal.protocol._errors import ClosedClientError

__all__ = ["ClosedClientError"]
