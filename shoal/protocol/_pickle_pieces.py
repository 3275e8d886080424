"""Pieces of protocol-5 pickles, for payloads put together around one ``pickle.dumps``.

Owns: which argument values pickle as they are (nothing for the task pickler to replace:
no function, class or buffer), the opcodes of a short string and of a global, and a
pickle's body without its framing. Used by
``client.map``'s payloads (:class:`~shoal.protocol._serialize.CallPickles`) and by the
dask-collections path's (:class:`~shoal.protocol._call.RefCallPickles`).
"""

from __future__ import annotations

import pickle
from typing import Any

# Values pickled as they are: a payload of only these needs no reducer call.
PLAIN = frozenset({int, float, str, bytes, bool, type(None)})
PLAIN_BYTES = 32 * 1024  # bigger argument pickles take the general path


def short_str(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > 255:
        raise ValueError(f"name too long for a short pickle string: {text!r}")
    return pickle.SHORT_BINUNICODE + bytes([len(raw)]) + raw


def global_ref(obj: Any) -> bytes:
    """The opcodes that push ``obj`` (a module-level function or class) by name."""
    return short_str(obj.__module__) + short_str(obj.__qualname__) + pickle.STACK_GLOBAL


FRAME = pickle.FRAME[0]


def body(data: bytes) -> bytes | None:
    """A protocol-5 pickle without its PROTO header, FRAME header and STOP: the opcodes
    that push the object; None when it is framed in more than one frame."""
    start = 2
    if len(data) > 2 and data[2] == FRAME:
        if int.from_bytes(data[3:11], "little") != len(data) - 11:
            return None
        start = 11
    return data[start:-1]
