"""Turning Python objects into frames and back.

Owns: pickle protocol 5 with out-of-band buffers (numpy arrays travel without a copy),
cloudpickle for functions, and the function table that lets one function travel once per
worker however many tasks use it. Must not know about sockets, messages or task states.
"""

from __future__ import annotations

import copyreg
import hashlib
import io
import pickle
import sys
import threading
import types
import weakref
from collections.abc import Callable
from typing import Any

import cloudpickle

# Results and arguments smaller than this ride inside the message header.
INLINE_LIMIT = 64 * 1024


class Serialized:
    """An already-pickled object: ``frames[0]`` is the pickle stream, the rest are buffers."""

    __slots__ = ("frames",)

    def __init__(self, frames: list[Any]) -> None:
        self.frames = frames

    @property
    def nbytes(self) -> int:
        return sum(memoryview(f).nbytes for f in self.frames)

    def __repr__(self) -> str:
        return f"<Serialized {len(self.frames)} frames, {self.nbytes} bytes>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Serialized) and [bytes(f) for f in self.frames] == [
            bytes(f) for f in other.frames
        ]

    __hash__ = None  # type: ignore[assignment]


def describe(obj: object) -> str:
    """A short, safe description of an object for error messages."""
    try:
        text = repr(obj)
    except Exception:
        text = f"<{type(obj).__name__} object>"
    if len(text) > 120:
        text = text[:117] + "..."
    return text


_h5py_ready = False


def _register_reducers() -> None:
    """Teach pickle about h5py objects once h5py is in use (it is imported lazily)."""
    global _h5py_ready
    if not _h5py_ready and "h5py" in sys.modules:
        from shoal.protocol._h5py_refs import install

        install()
        _h5py_ready = True


def dumps(obj: object) -> Serialized:
    """Pickle ``obj`` (cloudpickle where plain pickle cannot) with out-of-band buffers.

    Raises:
        TypeError: the object cannot be pickled; the message names it.
    """
    _register_reducers()
    buffers: list[pickle.PickleBuffer] = []
    try:
        head = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    except Exception:
        buffers = []
        try:
            head = cloudpickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
        except Exception as exc:
            raise TypeError(
                f"Could not serialize {describe(obj)} of type {type(obj).__name__}: {exc}. "
                "Objects sent to the cluster must be picklable (pass a file name or "
                "parameters instead of an open handle, lock or connection)."
            ) from exc
    return Serialized([head, *(b.raw() for b in buffers)])


def loads(ser: Serialized, functions: FunctionTable | None = None) -> Any:
    """Unpickle what :func:`dumps` or :func:`dumps_task` produced. Task payloads refer to
    functions by id; those must have been added to a :class:`FunctionTable` first."""
    head, *buffers = ser.frames
    # Frames that arrived inline are immutable bytes; arrays built on them would be
    # read-only, unlike on the sending side. Small copies keep them writable.
    buffers = [bytearray(b) if isinstance(b, bytes) else b for b in buffers]
    return pickle.loads(head, buffers=buffers)


# --- the function table -------------------------------------------------------------------
# Content-addressed (a function's id is the hash of its pickle), so one table per process
# serves every worker, client and replay in it.
_BLOBS: dict[str, bytes] = {}
_FUNCTIONS: dict[str, Any] = {}


def function_id(blob: bytes) -> str:
    """A function blob's content id: the name it travels under."""
    return hashlib.blake2b(blob, digest_size=12).hexdigest()


def check_function_blob(fid: str, blob: bytes) -> None:
    """Raise ``ValueError`` unless ``fid`` is ``blob``'s content id: a peer must not make
    another client's function id name different code."""
    if not isinstance(blob, (bytes, bytearray, memoryview)) or function_id(blob) != fid:
        raise ValueError(f"function blob {fid!r} does not match its content id; refused")


class FunctionTable:
    """Functions known to this process, by content hash (fid)."""

    def add_blobs(self, blobs: dict[str, bytes]) -> None:
        """Learn new functions, each checked against its content id first.

        Raises:
            ValueError: a blob is not what its id says (nothing of it was kept).
        """
        for fid, blob in blobs.items():
            if fid not in _BLOBS:
                check_function_blob(fid, blob)
                _BLOBS[fid] = bytes(blob)

    def blob(self, fid: str) -> bytes:
        return _BLOBS[fid]

    def __contains__(self, fid: object) -> bool:
        return fid in _BLOBS

    def function(self, fid: str) -> Any:
        return _function(fid)


def _function(fid: str) -> Any:
    """Unpickling hook for a function sent through the table."""
    try:
        return _FUNCTIONS[fid]
    except KeyError:
        pass
    try:
        blob = _BLOBS[fid]
    except KeyError:
        raise pickle.UnpicklingError(
            f"function {fid} was never received by this process (a shoal protocol bug)"
        ) from None
    fn = _FUNCTIONS[fid] = cloudpickle.loads(blob)
    return fn


class FunctionCache:
    """Client side: pickles each function once and names it by the hash of its bytes."""

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[Any, str]] = {}
        self.blobs: dict[str, bytes] = {}
        self._local = threading.local()

    def pickler(self) -> TaskPickler:
        """This thread's reusable payload pickler."""
        p: TaskPickler | None = getattr(self._local, "pickler", None)
        if p is None:
            p = self._local.pickler = TaskPickler(self)
        return p

    def fid(self, fn: Callable[..., Any]) -> str:
        hit = self._by_id.get(id(fn))
        if hit is not None and hit[0]() is fn:
            return hit[1]
        try:
            buf = io.BytesIO()
            _FunctionPickler(buf, protocol=5).dump(fn)
            blob = buf.getvalue()
        except Exception as exc:
            raise TypeError(
                f"Could not serialize function {describe(fn)}: {exc}. Functions sent to the "
                "cluster must be picklable; define them at module level or avoid closing over "
                "locks, sockets and open files."
            ) from exc
        fid = function_id(blob)
        self.blobs.setdefault(fid, blob)
        try:
            ref: Any = weakref.ref(fn)
        except TypeError:
            ref = _strong(fn)
        self._by_id[id(fn)] = (ref, fid)
        return fid


class _FunctionPickler(cloudpickle.Pickler):
    """cloudpickle, but functions pickled by value keep their source file name, so remote
    tracebacks point at the user's file and line (cloudpickle blanks it for determinism)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.CodeType):
            rv = cloudpickle.cloudpickle._code_reduce(obj)
            args = tuple(
                obj.co_filename if isinstance(a, str) and a == "<dynamic-code>" else a
                for a in rv[1]
            )
            return (rv[0], args)
        return super().reducer_override(obj)


class _strong:
    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __call__(self) -> Any:
        return self.obj


class TaskPickler(pickle.Pickler):
    """Pickles task payloads, sending Python functions through the function table.

    ``fids`` collects the function ids the payload refers to, so the scheduler can ship
    each function to a worker once. One pickler per thread is reused for every payload
    (building one costs as much as pickling a small task).
    """

    dispatch_table = copyreg.dispatch_table

    def __init__(self, cache: FunctionCache) -> None:
        self._file = io.BytesIO()
        self._buffers: list[pickle.PickleBuffer] = []
        super().__init__(self._file, protocol=5, buffer_callback=self._buffers.append)
        self._cache = cache
        self.fids: list[str] = []

    def pickle(self, obj: object) -> tuple[Serialized, list[str]]:
        file, buffers = self._file, self._buffers
        file.seek(0)
        file.truncate()
        self.fids = []
        try:
            self.dump(obj)
            frames = [file.getvalue(), *(b.raw() for b in buffers)]
        finally:
            buffers.clear()
            self.clear_memo()  # the memo holds the arguments: don't keep them alive
        return Serialized(frames), self.fids

    def reducer_override(self, obj: Any) -> Any:
        # Called only for non-builtin objects (not for ints, strings, tuples...), so this
        # costs a Python call per function, task or custom object, not per argument.
        if type(obj) is types.FunctionType and obj is not _function:
            fid = self._cache.fid(obj)
            if fid not in self.fids:
                self.fids.append(fid)
            return _function, (fid,)
        # Anything plain pickle cannot do by reference (classes defined in __main__) is
        # handled by cloudpickle.
        return _cloud_reducer(obj)


def _cloud_reducer(obj: Any) -> Any:
    if isinstance(obj, type) and obj.__module__ == "__main__":
        return cloudpickle.loads, (cloudpickle.dumps(obj),)
    return NotImplemented


def dumps_task(obj: object, cache: FunctionCache) -> tuple[Serialized, list[str]]:
    """Pickle a task payload; returns it and the function ids it uses.

    Raises:
        TypeError: something in the task cannot be pickled; the message names it.
    """
    _register_reducers()
    pickler = cache.pickler()
    try:
        return pickler.pickle(obj)
    except Exception as exc:
        raise TypeError(
            f"Could not serialize {describe(obj)}: {exc}. Arguments and functions sent to "
            "the cluster must be picklable (pass a file name or parameters instead of an open "
            "handle, lock or connection)."
        ) from exc
