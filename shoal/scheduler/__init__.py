"""The scheduler: a pure state machine (``_state``) inside a thin I/O shell (``_server``)."""

from __future__ import annotations


def compiled() -> bool:
    """Whether this process runs the compiled (mypyc) scheduler state machine, built with
    ``SHOAL_MYPYC=1 pip install .`` (README, "Compiled scheduler"), rather than pure Python
    (the default). The compiled modules are extension modules in place of ``.py`` files."""
    from importlib.machinery import ExtensionFileLoader

    from shoal.scheduler import _state

    return isinstance(getattr(_state, "__loader__", None), ExtensionFileLoader)


def build() -> str:
    """``"compiled (mypyc)"`` or ``"pure Python"``: which scheduler state machine runs here."""
    return "compiled (mypyc)" if compiled() else "pure Python"
