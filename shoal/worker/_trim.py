"""Giving freed heap memory back to the operating system (glibc's ``malloc_trim``).

A worker's allocator keeps freed blocks of up to 16 MiB for reuse (less on a small worker; see
``shoal.worker._spawn_environ``): that keeps chunk-sized allocations fast, but memory freed in the
middle of a heap stays in the process. The memory monitor calls :func:`trim_heap` when
the process passes its *spill* threshold, so such memory leaves before anything is spilled
for it. Elsewhere than glibc (musl, macOS) there is nothing to call and it does nothing.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

logger = logging.getLogger(__name__)

_malloc_trim: Any = None
_looked_up = False


def _lookup() -> Any:
    global _malloc_trim, _looked_up
    if not _looked_up:
        _looked_up = True
        try:
            # The symbols already loaded into the process, libc's among them: no
            # ``ctypes.util.find_library``, which runs ``ldconfig`` in a subprocess (a fork
            # of a large worker just as it passes its spill threshold).
            _malloc_trim = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError) as exc:
            logger.debug("no malloc_trim in this C library (%s): heap trimming is off", exc)
            _malloc_trim = None
    return _malloc_trim


def trim_heap() -> bool:
    """Return the free pages of every malloc arena to the system; True if glibc did.
    Takes a few milliseconds on a large heap: call it from a thread that may block."""
    trim = _lookup()
    if trim is None:
        return False
    return bool(trim(0))
