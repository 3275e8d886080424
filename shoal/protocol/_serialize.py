"""Turning Python objects into frames and back.

Owns: pickle protocol 5 with out-of-band buffers (numpy arrays travel without a copy),
cloudpickle for functions, and the function table that lets one function travel once per
worker however many tasks use it. Must not know about sockets, messages or task states.
"""

from __future__ import annotations

import collections
import copyreg
import hashlib
import io
import logging
import operator
import pickle
import sys
import threading
import types
import weakref
from collections.abc import Callable
from typing import Any

import cloudpickle

from shoal.protocol._pickle_pieces import PLAIN, PLAIN_BYTES
from shoal.protocol._pickle_pieces import body as _body
from shoal.protocol._pickle_pieces import global_ref as _global
from shoal.protocol._pickle_pieces import short_str as _short_str
from shoal.protocol._process_locks import (
    ProcessLockError,
    process_lock_in,
    reduce_serializable_lock,
)

logger = logging.getLogger("shoal.protocol")

# Results and arguments smaller than this ride inside the message header.
INLINE_LIMIT = 64 * 1024


# Values bigger than this (by sizeof, or pickles with more in-band bytes than this) are
# (un)pickled off the event loops, in a thread: object-heavy ones take long enough to
# freeze a worker or the client's loop. Smaller ones stay inline: the fast path.
OFFLOAD_BYTES = 1 << 20

# Types whose pickle is cheap however big they are (buffers travel out of band).
_ZERO_COPY = ("ndarray", "bytes", "bytearray", "memoryview")


def costly_to_pickle(value: Any, nbytes: int) -> bool:
    """Whether pickling ``value`` (``nbytes`` by sizeof) belongs off the event loop."""
    if nbytes <= OFFLOAD_BYTES:
        return False
    if type(value).__name__ not in _ZERO_COPY:
        return True
    dtype = getattr(value, "dtype", None)
    return dtype is not None and dtype.hasobject  # arrays of Python objects pickle in-band


def costly_to_load(ser: Serialized) -> bool:
    """Whether unpickling ``ser`` belongs off the event loop (a big in-band pickle stream;
    out-of-band buffers cost nothing to load)."""
    return memoryview(ser.frames[0]).nbytes > OFFLOAD_BYTES


class Serialized:
    """An already-pickled object: ``frames[0]`` is the pickle stream, the rest are buffers."""

    __slots__ = ("frames",)

    def __init__(self, frames: list[Any] | tuple[Any, ...]) -> None:
        # A tuple where the frames are final (a one-frame tuple is 40 bytes smaller than
        # the list a pickler builds: a held task's payload and an inline result each).
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
    except Exception:  # a broken __repr__: described by its type instead
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
    """Pickle ``obj`` with out-of-band buffers: plain pickle first, cloudpickle when plain
    pickle fails or its bytes refer to ``__main__`` (the receiving process has another
    ``__main__``) or to a module registered with ``cloudpickle.register_pickle_by_value``.
    Classes whose instances needed cloudpickle go straight to it next time.

    Raises:
        TypeError: the object cannot be pickled; the message names it.
    """
    kind = type(obj)
    if kind in PLAIN:  # no buffer, nothing by reference: the same bytes, ~0.6 µs sooner
        return Serialized([pickle.dumps(obj, protocol=5)])
    _register_reducers()
    buffers: list[pickle.PickleBuffer] = []
    if kind not in _CLOUD_TYPES:
        try:
            head = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
        except Exception as exc:  # cloudpickle below tries; its error is the one raised
            logger.debug("plain pickle of %s failed, trying cloudpickle: %r", kind.__name__, exc)
            head = b""
        # (inline, not a call: this is every result's path)
        if head and b"__main__" not in head and not (_BY_VALUE and _names_by_value(head)):
            return Serialized([head, *(b.raw() for b in buffers)] if buffers else [head])
        if kind.__module__ != "builtins":  # a list or dict says nothing about the next one
            if len(_CLOUD_TYPES) >= 1024:
                _CLOUD_TYPES.clear()
            _CLOUD_TYPES.add(kind)
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


# Types whose instances plain pickle could not send (a plain set: this is checked for every
# result; bounded, as classes defined in a loop would otherwise pile up).
_CLOUD_TYPES: set[type] = set()


# The module names cloudpickle.register_pickle_by_value collects (a set it fills in place).
_BY_VALUE: set[str] = getattr(cloudpickle.cloudpickle, "_PICKLE_BY_VALUE_MODULES", set())


def _names_by_value(head: bytes) -> bool:
    """Whether a plain pickle stream may name something in a module the user asked
    cloudpickle to send by value (a false positive only costs a cloudpickle)."""
    return any(name.encode() in head for name in _BY_VALUE)


def loads(ser: Serialized, functions: FunctionTable | None = None) -> Any:
    """Unpickle what :func:`dumps` or :func:`dumps_task` produced. Task payloads refer to
    functions by id; those must have been added to a :class:`FunctionTable` first."""
    frames = ser.frames
    if len(frames) == 1:  # no buffers (most results and payloads): nothing to copy
        return pickle.loads(frames[0])
    head, *buffers = frames
    # Frames that arrived inline are immutable bytes; arrays built on them would be
    # read-only, unlike on the sending side. Small copies keep them writable.
    buffers = [bytearray(b) if isinstance(b, bytes) else b for b in buffers]
    return pickle.loads(head, buffers=buffers)


# --- the function table -------------------------------------------------------------------
# Content-addressed (a function's id is the hash of its pickle), so one table per process
# serves every worker, client and replay in it.
_BLOBS: dict[str, bytes] = {}
_FUNCTIONS: dict[str, Any] = {}
_HOLDERS: dict[str, int] = {}  # fid -> how many tables (workers of this process) hold it


def function_id(blob: bytes) -> str:
    """A function blob's content id: the name it travels under."""
    return hashlib.blake2b(blob, digest_size=12).hexdigest()


def check_function_blob(fid: str, blob: bytes) -> None:
    """Raise ``ValueError`` unless ``fid`` is ``blob``'s content id: a peer must not make
    another client's function id name different code."""
    if not isinstance(blob, (bytes, bytearray, memoryview)) or function_id(blob) != fid:
        raise ValueError(f"function blob {fid!r} does not match its content id; refused")


class FunctionTable:
    """Functions known to this process, by content hash (fid). Each worker has its own
    table over the process-wide store; a blob goes when every table that got it has
    been told to forget it."""

    def __init__(self) -> None:
        self._mine: set[str] = set()

    def add_blobs(self, blobs: dict[str, bytes]) -> None:
        """Learn new functions, each checked against its content id first.

        Raises:
            ValueError: a blob is not what its id says (nothing of it was kept).
        """
        for fid, blob in blobs.items():
            if fid not in _BLOBS:
                check_function_blob(fid, blob)
                _BLOBS[fid] = bytes(blob)
            if fid not in self._mine:
                self._mine.add(fid)
                _HOLDERS[fid] = _HOLDERS.get(fid, 0) + 1

    def forget(self, fids: list[str]) -> None:
        """The scheduler no longer uses these functions (it sends them again if it does)."""
        for fid in fids:
            if fid not in self._mine:
                continue
            self._mine.discard(fid)
            n = _HOLDERS.get(fid, 1) - 1
            if n > 0:
                _HOLDERS[fid] = n
            else:
                _HOLDERS.pop(fid, None)
                _BLOBS.pop(fid, None)
                _FUNCTIONS.pop(fid, None)

    def blob(self, fid: str) -> bytes:
        return _BLOBS[fid]

    def __contains__(self, fid: object) -> bool:
        return fid in _BLOBS

    def function(self, fid: str) -> Any:
        return _function(fid)


# The unpickling hooks every payload names (by their short names in ``shoal._p``): pickled
# by reference, never through the function table.
from shoal._p import C as _short_call  # noqa: E402
from shoal._p import F as _short_function  # noqa: E402

_BY_NAME = frozenset((_short_call, _short_function))


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
    """Client side: pickles each function once and names it by the hash of its bytes.

    A function pickled by value (defined in ``__main__`` or inside a function) carries the
    values of its globals, closure cells and defaults as they are when it is pickled. The
    cache remembers those objects with the fid and reuses the fid only while every one of
    them is still the same object; rebinding a global (``scale = 3``) pickles it again. A
    function pickled by reference (importable) is cached by identity alone. Entries go
    when their function is garbage collected.
    """

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[Any, str, _Captured | None]] = {}
        self.blobs: dict[str, bytes] = {}  # of live functions only (see _users)
        self._users: dict[str, int] = {}  # fid -> live cache entries with that fid
        # The last blobs made, kept a little longer: a function that dies between
        # pickling a row and sending it (made by a reducer, say) still has its blob.
        self._recent: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._local = threading.local()

    def blob(self, fid: str) -> bytes:
        """The pickled function ``fid`` (of a live function or one pickled lately)."""
        blob = self.blobs.get(fid)
        return blob if blob is not None else self._recent[fid]

    def pickler(self) -> TaskPickler:
        """This thread's reusable payload pickler."""
        p: TaskPickler | None = getattr(self._local, "pickler", None)
        if p is None:
            p = self._local.pickler = TaskPickler(self)
        return p

    def batch(self) -> _Batch:
        """``with cache.batch():`` around the rows of one ``map`` or graph (built in one go
        on one thread): each function's fid is checked once for the batch, not per row."""
        return _Batch(self.pickler())

    def fid(self, fn: Callable[..., Any]) -> str:
        hit = self._by_id.get(id(fn))
        if hit is not None and hit[0]() is fn:
            captured = hit[2]
            if captured is None:
                return hit[1]
            if len(captured) == 1 and not captured[0][3]:  # the common case, inline
                _, names, snap, _ = captured[0]
                now = (fn.__code__, fn.__defaults__, fn.__kwdefaults__,
                       *map(fn.__globals__.get, names))
                if fn.__closure__:
                    now += tuple(map(_cell, fn.__closure__))
                if len(now) == len(snap) and all(map(operator.is_, now, snap)):
                    return hit[1]
            elif _unchanged(fn, captured):
                return hit[1]
        captured = None if _by_reference(fn) else _capture(fn)
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
        key = id(fn)
        if hit is not None:  # re-pickled: the old entry (same or dead function) goes
            self._unuse(key)
        self._use(fid, blob)
        try:
            ref: Any = weakref.ref(fn, lambda _r: self._unuse(key))
        except TypeError:
            ref = _strong(fn)
        self._by_id[key] = (ref, fid, captured)
        return fid

    def hold(self, blob: bytes, owner: object) -> str:
        """Keep ``blob`` in the table while ``owner`` lives, as a function's is kept while
        the function lives, and give its id: a part that many task payloads share and name
        (``RefCallPickles.templated``) travels once, like a function."""
        fid = function_id(blob)
        self._use(fid, blob)
        weakref.finalize(owner, self._drop_user, fid)
        return fid

    def _use(self, fid: str, blob: bytes) -> None:
        self.blobs.setdefault(fid, blob)
        self._users[fid] = self._users.get(fid, 0) + 1
        self._recent[fid] = blob
        if len(self._recent) > 64:
            self._recent.popitem(last=False)

    def _unuse(self, key: int) -> None:
        """Drop the entry at ``key`` (its function died or was re-pickled), and the blob
        once no live function has it: closures capturing data are not kept forever."""
        entry = self._by_id.pop(key, None)
        if entry is None:
            return
        self._drop_user(entry[1])

    def _drop_user(self, fid: str) -> None:
        n = self._users.get(fid, 1) - 1
        if n > 0:
            self._users[fid] = n
        else:
            self._users.pop(fid, None)
            self.blobs.pop(fid, None)


class _Batch:
    """See :meth:`FunctionCache.batch` (a class: cheaper than a generator context manager
    on the submit path)."""

    __slots__ = ("_outer", "_pickler")

    def __init__(self, pickler: TaskPickler) -> None:
        self._pickler = pickler
        self._outer = pickler.verified

    def __enter__(self) -> None:
        if self._outer is None:
            self._pickler.verified = {}

    def __exit__(self, *exc: object) -> None:
        self._pickler.verified = self._outer


_MISSING = object()
_SELF = object()


def _by_reference(fn: Any) -> bool:
    """Whether cloudpickle sends ``fn`` as a reference the receiver imports."""
    if type(fn) is not types.FunctionType:
        return False
    try:
        return bool(cloudpickle.cloudpickle._should_pickle_by_reference(fn))
    except Exception as exc:  # let the pickler decide; treat as by value (never stale)
        logger.debug("cannot tell how cloudpickle sends %r: %r", fn, exc)
        return False


# What a by-value pickle of a function takes its content from, for each by-value function
# it reaches (itself first, stored as None so the entry does not keep it alive): the
# function, the names of the globals its code reads, a snapshot of the objects, and whether
# the snapshot holds the function itself (recursion; replaced by a marker).
_Captured = tuple[tuple[Any, tuple[str, ...], tuple[Any, ...], bool], ...]


def _snapshot(f: Any, names: tuple[str, ...]) -> tuple[Any, ...]:
    """Code, defaults, read globals and closure cell contents of ``f``."""
    vals = (f.__code__, f.__defaults__, f.__kwdefaults__, *map(f.__globals__.get, names))
    closure = f.__closure__
    if closure:
        vals += tuple(map(_cell, closure))
    return vals


def _cell(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return _MISSING


def _capture(fn: Any) -> _Captured:
    """The snapshot of ``fn`` and of every by-value function it reaches."""
    out = []
    seen: set[int] = set()
    stack = [fn]
    while stack:
        f = stack.pop()
        if id(f) in seen:
            continue
        seen.add(id(f))
        names = tuple(cloudpickle.cloudpickle._extract_code_globals(f.__code__))
        snap = _snapshot(f, names)
        has_self = any(v is fn for v in snap)
        if has_self:
            snap = tuple(_SELF if v is fn else v for v in snap)
        out.append((None if f is fn else f, names, snap, has_self))
        stack.extend(v for v in snap if type(v) is types.FunctionType and not _by_reference(v))
    return tuple(out)


def _unchanged(fn: Any, captured: _Captured) -> bool:
    """Whether every object ``fn``'s pickle was made from is still the same (the check on
    every submit of a by-value function: keep it lean)."""
    is_ = operator.is_
    for f, names, snap, has_self in captured:
        now = _snapshot(fn if f is None else f, names)
        if has_self:
            now = tuple(_SELF if v is fn else v for v in now)
        if len(now) != len(snap) or not all(map(is_, now, snap)):
            return False
    return True


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
        # id -> (function, fid) checked, or (class, bytes) pickled, during the current
        # batch (FunctionCache.batch)
        self.verified: dict[int, tuple[Any, Any]] | None = None

    def fid(self, fn: Any) -> str:
        """``fn``'s fid, checked once per batch (see :meth:`FunctionCache.batch`)."""
        verified = self.verified
        if verified is None:
            return self._cache.fid(fn)
        got = verified.get(id(fn))
        if got is None or got[0] is not fn:
            got = verified[id(fn)] = (fn, self._cache.fid(fn))
        return got[1]

    def pickle(self, obj: object) -> tuple[Serialized, list[str]]:
        file, buffers = self._file, self._buffers
        file.seek(0)
        file.truncate()
        self.fids = []
        try:
            self.dump(obj)
            frames = (file.getvalue(), *(b.raw() for b in buffers)) if buffers else (
                file.getvalue(),)
        finally:
            buffers.clear()
            self.clear_memo()  # the memo holds the arguments: don't keep them alive
        return Serialized(frames), self.fids

    def reducer_override(self, obj: Any) -> Any:
        # Called only for non-builtin objects (not for ints, strings, tuples...), so this
        # costs a Python call per function, task or custom object, not per argument.
        if type(obj) is types.FunctionType and obj not in _BY_NAME:
            fid = self.fid(obj)
            if fid not in self.fids:
                self.fids.append(fid)
            return _short_function, (fid,)
        # Classes the receiver cannot import (in __main__, or defined inside a function)
        # go by value; within a batch (one map or graph) each class is pickled once.
        if isinstance(obj, type) and _by_value_class(obj):
            verified = self.verified
            if verified is None:
                return cloudpickle.loads, (cloudpickle.dumps(obj, protocol=5),)
            got = verified.get(id(obj))
            if got is None or got[0] is not obj:
                got = verified[id(obj)] = (obj, cloudpickle.dumps(obj, protocol=5))
            return cloudpickle.loads, (got[1],)
        # dask's SerializableLock (one lock per process) goes as a cluster lock instead. By
        # name first: a worker process must not import dask to pickle (start-up time).
        if type(obj).__name__ == "SerializableLock" and type(obj).__module__ == "dask.utils":
            return reduce_serializable_lock(obj)
        return NotImplemented


def _by_value_class(cls: type) -> bool:
    """Whether the receiver cannot import ``cls`` (defined in ``__main__``, inside a
    function, or in a module registered to go by value), so it must travel by value. The
    decision is cached per class; the class's bytes are not (a class may change between
    two submissions)."""
    by_value = _CLASS_BY_VALUE.get(cls)
    if by_value is None:
        try:
            by_value = not cloudpickle.cloudpickle._should_pickle_by_reference(cls)
        except Exception as exc:  # an odd class: let cloudpickle send it by value
            logger.debug("cannot tell how cloudpickle sends %r, sent by value: %r", cls, exc)
            by_value = True
        try:
            _CLASS_BY_VALUE[cls] = by_value
        except TypeError:
            pass
    return by_value


_CLASS_BY_VALUE: weakref.WeakKeyDictionary[type, bool] = weakref.WeakKeyDictionary()


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
        first = exc
    # Something plain pickle cannot reduce (a module, a local function inside an object
    # cloudpickle knows how to send): the whole payload goes by cloudpickle, functions
    # included (they then travel with the task instead of through the function table).
    buffers: list[pickle.PickleBuffer] = []
    try:
        head = cloudpickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    except Exception:
        held = process_lock_in(obj)
        if held is not None:
            raise ProcessLockError(
                f"Could not serialize {describe(obj)}: it holds a {held} of this process, "
                "which cannot lock anything in another one. dask's compute runs such tasks "
                "here; elsewhere, pass a shoal Lock (from shoal import Lock) instead."
            ) from first
        raise TypeError(
            f"Could not serialize {describe(obj)}: {first}. Arguments and functions sent to "
            "the cluster must be picklable (pass a file name or parameters instead of an open "
            "handle, lock or connection)."
        ) from first
    return Serialized([head, *(b.raw() for b in buffers)]), []


# --- payloads of one function over many plain argument tuples (client.map) ----------------

_PLAIN_ARGS = PLAIN
_PLAIN_BYTES = PLAIN_BYTES
_FRAME = pickle.FRAME[0]


_call_heads: dict[str, bytes] = {}


def call_head(fid: str) -> bytes:
    """The constant first bytes of every payload :class:`CallPickles` makes for the function
    ``fid`` (``shoal._p.C``, ``shoal._p.F(fid)``): 58 of a ``noop(i)`` payload's 69. The
    scheduler keeps a task's payload without them (``shoal.scheduler._tasks.compact_payload``)."""
    head = _call_heads.get(fid)
    if head is None:
        if len(_call_heads) >= 4096:  # a bounded table: start again with the fids now used
            _call_heads.clear()
        head = _call_heads[fid] = (pickle.PROTO + b"\x05" + _global(_short_call)
                                   + _global(_short_function) + _short_str(fid) + pickle.TUPLE1 + pickle.REDUCE)
    return head


class CallPickles:
    """The payloads of ``Call(func, args, kwargs)`` for one Python function (by its fid)
    and one ``kwargs`` over many argument tuples, as :func:`dumps_task` would pickle them,
    built from constant pieces around a plain ``pickle.dumps(args)``: no reducer call per
    task (about 4 µs of the 6 a map task's payload took).

    The stream is ``shoal._p.C``, ``shoal._p.F(fid)`` (the short names every payload uses,
    see shoal/_p.py), the arguments' own pickle, the kwargs, then TUPLE3, REDUCE. The constant pieces memoize nothing, so the memo indices in the
    arguments' pickle (which starts at 0) are the stream's; the kwargs are pickled without
    a memo. ``__call__`` returns None for arguments it does not take (anything but plain
    values): the caller pickles those with :func:`dumps_task`.
    """

    def __init__(self, fid: str, kwargs: dict[str, Any]) -> None:
        if any(type(v) not in _PLAIN_ARGS for v in kwargs.values()):
            raise ValueError("CallPickles takes plain keyword arguments only")
        buf = io.BytesIO()
        p = pickle.Pickler(buf, protocol=5)
        p.fast = True  # no memo: its indices would clash with the arguments'
        p.dump(kwargs)
        kw = _body(buf.getvalue())
        if kw is None:
            raise ValueError("keyword arguments too big for CallPickles")
        self._head = call_head(fid)
        self._tail = kw + pickle.TUPLE3 + pickle.REDUCE + pickle.STOP

    @classmethod
    def of(cls, fid: str, kwargs: dict[str, Any]) -> CallPickles | None:
        """The payload maker for ``fid`` and ``kwargs``, or None when the keyword
        arguments are not plain (or too big): then every payload takes the general path."""
        if not all(type(v) in _PLAIN_ARGS for v in kwargs.values()):
            return None
        try:
            return cls(fid, kwargs)
        except ValueError:  # a kwargs pickle of more than one frame
            return None

    def __call__(self, args: tuple[Any, ...]) -> Serialized | None:
        plain = _PLAIN_ARGS
        for a in args:
            if type(a) not in plain:
                return None
        data = pickle.dumps(args, protocol=5)
        if len(data) > _PLAIN_BYTES:
            return None
        # Under the pickler's 64 KiB frame target the stream is one frame (or none, when
        # tiny): its body is what lies between the FRAME header (or PROTO) and STOP.
        body = data[11:-1] if data[2] == _FRAME else data[2:-1]
        return Serialized((self._head + body + self._tail,))
