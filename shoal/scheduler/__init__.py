"""The scheduler: a pure state machine (``_state``) inside a thin I/O shell (``_server``).

Public here, as in ``distributed.scheduler``: the errors a task fails with when no worker
could run it within ``distributed.scheduler.no-workers-timeout``."""

from __future__ import annotations

from shoal.protocol._errors import NoValidWorkerError as NoValidWorkerError
from shoal.protocol._errors import NoWorkerError as NoWorkerError


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
