"""``futures_of`` for the diagnostics: the client's own walk (one implementation)."""

from shoal.client._structure import futures_of, is_future

__all__ = ["futures_of", "is_future"]
