"""The seed's story as a runnable tour (`shoal demo`) and the data it needs."""

from shoal.demo._data import prepare_random

__all__ = ["prepare_random"]
