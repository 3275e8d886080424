"""The data store of a worker with a memory limit: values in memory, spilled to disk.

Owns: the values, their files, and carrying out :class:`shoal.worker._memory.MemoryPolicy`'s
orders. It is the ``worker.data`` mapping the executor's threads and the event loop (peer
``GetData``) both use, so every operation holds one lock. A worker without a memory limit
keeps a plain dict instead and pays nothing for any of this.

File format: a value is pickled with out-of-band buffers (:func:`dumps`) and written as a
header (format version, frame count, then per frame its length on disk, its length in
memory and whether it is compressed) followed by the frames, straight from the buffers
(numpy arrays are not copied to be written). Reading allocates one buffer per raw frame
(big ones not zero-filled) and reads into it, so the array unpickled over it is writable
and was copied once, by the disk read.

Compression, as dask's ``distributed.worker.memory.spill-compression``: "auto" (the
default) compresses with lz4 when the ``lz4`` package is installed (the ``compression``
extra), "lz4" requires it, False/None turn it off. Values up to 64 MiB are compressed
(bigger ones stay raw, so that a peer fetching one gets it streamed from the file, never
decompressed whole in memory); each frame of ``_MIN_COMPRESS`` bytes or more on its own,
kept raw when that saves less than 10% (a sample of a big frame is tried first, so
incompressible data costs little). A compressed frame is a run of lz4 blocks of at most
1 MiB of raw data each (a piece header: lengths compressed and raw), decompressed one by
one into the same buffer a raw frame is read into: decompressing a 20 MB frame whole
needed a fresh 20 MB malloc'd output, page-faulted in 4 KiB pages (workers map blocks
over 16 MiB afresh), which made read-back five times slower than the decompression
itself. Peers always receive plain frames: only raw frames are streamed from the file
(:func:`open_frames`).
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import struct
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any

from shoal._task_refs import task_refs
from shoal.protocol._framing import FileFrame
from shoal.protocol._serialize import INLINE_LIMIT, Serialized, dumps, loads
from shoal.protocol._sizeof import nbytes as measure
from shoal.worker._memory import (
    Command,
    MemoryLimits,
    MemoryPolicy,
    MemorySampled,
    Spill,
    SpillFailed,
    Unspill,
    ValueLoaded,
)

logger = logging.getLogger("shoal.worker")

_VERSION = 3  # of the file format (1: no compression flags; 2: one lz4 frame per frame)
_HEAD = struct.Struct("<BI")  # format version, frame count
_FRAME = struct.Struct("<QQB")  # length on disk, length in memory, compressed (1) or raw (0)
_BIG = 256 * 1024  # frames read into uninitialized buffers from this size
_MIN_COMPRESS = 4096  # smaller frames are stored raw (compressing them saves nothing)
_SAMPLE = 64 * 1024  # a bigger frame is compressed only if this much of it compresses
_PAYS = 0.9  # compressed frames are kept when under this fraction of their raw size
_PIECE = 1024 * 1024  # raw bytes per lz4 block of a compressed frame
_PIECE_HEAD = struct.Struct("<II")  # a block's compressed length, its raw length
# Bigger values are stored raw: a peer fetching one gets it streamed from the file a chunk
# at a time, where a compressed one would be decompressed whole in memory to be sent.
_MAX_COMPRESSED_VALUE = 64 * 1024 * 1024
_AUTO = ("auto",)
_OFF = (None, False, "false", "False", "none", "None", "")


def spill_compression(setting: Any) -> str | None:
    """The compressor spilled values use ("lz4" or None: none) for a value of dask's
    ``distributed.worker.memory.spill-compression`` config; raises ValueError for a
    compressor shoal lacks, or "lz4" when the ``lz4`` package is not installed."""
    if setting in _OFF:
        return None
    if setting in _AUTO or setting == "lz4":
        try:
            import lz4.frame  # noqa: F401
        except ImportError:
            if setting == "lz4":
                raise ValueError(
                    "distributed.worker.memory.spill-compression is 'lz4' but the lz4 "
                    "package is not installed: pip install lz4 (or shoal[compression]), "
                    "or set it to 'auto' or False") from None
            return None
        return "lz4"
    raise ValueError(
        f"distributed.worker.memory.spill-compression={setting!r} is not supported by "
        "shoal: use 'auto' (lz4 when installed), 'lz4' or False")


def _compressed(view: memoryview) -> list[bytes] | None:
    """``view`` compressed with lz4 as pieces (each a piece header and an lz4 block of at
    most ``_PIECE`` raw bytes), or None when that does not pay."""
    import lz4.block

    n = view.nbytes
    if n < _MIN_COMPRESS:
        return None
    if n > 4 * _SAMPLE:
        middle = n // 2
        sample = view[middle:middle + _SAMPLE]
        if len(lz4.block.compress(sample, store_size=False)) >= _PAYS * _SAMPLE:
            return None
    parts: list[bytes] = []
    total = 0
    for start in range(0, n, _PIECE):
        raw = view[start:start + _PIECE]
        block: bytes = lz4.block.compress(raw, store_size=False)
        parts.append(_PIECE_HEAD.pack(len(block), raw.nbytes))
        parts.append(block)
        total += _PIECE_HEAD.size + len(block)
        if total >= _PAYS * n:
            return None
    return parts


def write_frames(path: str, frames: list[Any], compression: str | None = None) -> int:
    """Write ``frames`` to a new file at ``path``, each compressed with ``compression``
    ("lz4" or None) where it pays; returns the bytes written (on disk)."""
    return _write_packed(path, _packed(frames, compression))


def _packed(frames: list[Any], compression: str | None) -> list[Any]:
    """The buffers of a spill file of ``frames`` (header first), as :func:`write_frames`
    writes them: their total is the file's size, known before it is written."""
    views = [memoryview(f).cast("B") for f in frames]
    if sum(v.nbytes for v in views) > _MAX_COMPRESSED_VALUE:
        compression = None
    stored: list[Any] = []
    rows = []
    for v in views:
        packed = _compressed(v) if compression is not None else None
        if packed is None:
            stored.append(v)
            rows.append(_FRAME.pack(v.nbytes, v.nbytes, 0))
        else:
            stored.extend(packed)
            rows.append(_FRAME.pack(sum(len(p) for p in packed), v.nbytes, 1))
    return [_HEAD.pack(_VERSION, len(views)) + b"".join(rows), *stored]


def _packed_size(parts: list[Any]) -> int:
    return sum(memoryview(x).nbytes for x in parts)


def _write_packed(path: str, parts: list[Any]) -> int:
    with open(path, "wb") as f:
        for x in parts:
            f.write(x)
    return _packed_size(parts)


def _header(f: Any, path: str) -> list[tuple[int, int, int]]:
    """The frames' (length on disk, length in memory, compressed) rows of a spill file."""
    version, n = _HEAD.unpack(f.read(_HEAD.size))
    if version != _VERSION:
        raise OSError(f"spill file {path} has format {version}, not {_VERSION}")
    data = f.read(n * _FRAME.size)
    if len(data) != n * _FRAME.size:
        raise OSError(f"spill file {path} is truncated")
    return [_FRAME.unpack_from(data, i * _FRAME.size) for i in range(n)]


def _decompressed(data: Any, size: int, path: str) -> Any:
    """A compressed frame's pieces (``data``) decompressed into one writable buffer of
    ``size`` bytes (see :func:`_buffer`)."""
    import lz4.block

    out = _buffer(size)
    view = memoryview(out)
    src = memoryview(data)
    pos = at = 0
    try:
        while at < len(src):
            packed, raw = _PIECE_HEAD.unpack_from(src, at)
            at += _PIECE_HEAD.size
            view[pos:pos + raw] = lz4.block.decompress(src[at:at + packed],
                                                       uncompressed_size=raw)
            at += packed
            pos += raw
    except (struct.error, ValueError, lz4.block.LZ4BlockError) as exc:
        raise OSError(f"spill file {path} is corrupt ({exc})") from exc
    if pos != size:
        raise OSError(f"spill file {path} is corrupt (a frame decompressed to "
                      f"{pos} bytes, not {size})")
    return out


def open_frames(path: str, inline: int) -> tuple[list[Any], Any]:
    """The frames :func:`write_frames` wrote, raw ones over ``inline`` bytes left in the
    file as :class:`FileFrame` (to be streamed), the others read (and decompressed: a
    peer always receives plain frames); and the open file, which the caller closes once
    done (it stays readable if the file is deleted meanwhile)."""
    f = open(path, "rb", buffering=0)  # noqa: SIM115 - handed to the caller
    try:
        rows = _header(f, path)
        offset = _HEAD.size + len(rows) * _FRAME.size
        frames: list[Any] = []
        for length, size, packed in rows:
            if not packed and length > inline:
                frames.append(FileFrame(f, offset, length))
            else:
                data = os.pread(f.fileno(), length, offset)
                if len(data) != length:
                    raise OSError(f"spill file {path} is truncated")
                frames.append(_decompressed(data, size, path) if packed else data)
            offset += length
    except BaseException:
        f.close()
        raise
    return frames, f


def _buffer(n: int) -> Any:
    """A writable buffer of ``n`` bytes about to be overwritten by a read: a big one is not
    zero-filled first (that memset cost as much as the read from the page cache)."""
    if n < _BIG:
        return bytearray(n)
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy comes with dask.array users
        return bytearray(n)
    buf: Any = np.empty(n, dtype=np.uint8)
    return memoryview(buf).cast("B")


def read_frames(path: str) -> list[Any]:
    """The frames :func:`write_frames` wrote (decompressed), each in a writable buffer of
    its own."""
    with open(path, "rb", buffering=0) as f:
        frames: list[Any] = []
        for length, size, packed in _header(f, path):
            if packed:
                data = f.read(length)
                if len(data) != length:
                    raise OSError(f"spill file {path} is truncated")
                frames.append(_decompressed(data, size, path))
                continue
            buf = _buffer(length)
            view = memoryview(buf)
            got = 0
            while got < length:
                step = f.readinto(view[got:])
                if not step:
                    raise OSError(f"spill file {path} is truncated")
                got += step
            frames.append(buf)
    return frames


class SpillBuffer(MutableMapping[Any, Any]):
    """``worker.data`` under a memory limit: least recently used values go to files in
    ``directory`` when the policy says so, and come back when read. ``compression``: "lz4"
    or None (see :func:`spill_compression`). The spill files take at most
    ``limits.max_spill`` bytes (dask's max-spill): past it values stay in memory."""

    def __init__(self, directory: str | None, limits: MemoryLimits,
                 compression: str | None = None) -> None:
        self.policy = MemoryPolicy(limits)
        self.compression = compression
        self.fast: dict[Any, Any] = {}
        self._files: dict[Any, str] = {}
        self._parent = directory
        self._dir: str | None = None
        self._names = itertools.count()
        self._lock = threading.RLock()
        self._closed = False
        # Totals for the benchmark and metrics: bytes (as on disk, so compressed) and
        # seconds of spill file writes and reads into this process (not the bytes streamed
        # from a file straight to a peer).
        self.written = 0
        self.write_seconds = 0.0
        self.read = 0
        self.read_seconds = 0.0

    # --- the mapping ---------------------------------------------------------------------------

    def __setitem__(self, key: Any, value: Any) -> None:
        self.put(key, value, measure(value))

    def put(self, key: Any, value: Any, nbytes: int) -> None:
        """Store ``value`` whose size is already known (the executor measured it). A
        closed store (its session ended) keeps nothing."""
        with self._lock:
            if self._closed:
                return
            if self._files:
                self._remove_file(key)
            self.fast[key] = value
            spills = self.policy.stored(key, nbytes)  # handle(ValueStored(...)), no object
            if spills:
                self._carry_out(spills)

    def __getitem__(self, key: Any) -> Any:
        with self._lock:
            try:
                value = self.fast[key]
            except KeyError:
                pass
            else:
                self.policy.used(key)  # handle(ValueUsed(key)), without the objects
                return value
            path = self._files.get(key)
            if path is None:
                raise KeyError(key)
            value = task_refs(loads, Serialized(self._read(path)))
            for cmd in self.policy.handle(ValueLoaded(key)):
                self._carry_out([cmd], loaded=value)
            return value

    def __delitem__(self, key: Any) -> None:
        with self._lock:
            found = self.fast.pop(key, _MISSING) is not _MISSING
            if self._files:
                found = self._remove_file(key) or found
            if not found:
                raise KeyError(key)
            self.policy.removed(key)  # handle(ValueRemoved(key)), without the object

    def drop(self, keys: Iterable[Any]) -> None:
        """Delete the values of those of ``keys`` held here (``del`` of each, skipping the
        keys not held), under one lock: the worker's ``Drop`` of freed results."""
        with self._lock:
            fast, files, removed = self.fast, self._files, self.policy.removed
            for key in keys:
                found = fast.pop(key, _MISSING) is not _MISSING
                if files:
                    found = self._remove_file(key) or found
                if found:
                    removed(key)

    def __contains__(self, key: object) -> bool:
        return key in self.fast or key in self._files

    def __iter__(self) -> Iterator[Any]:
        with self._lock:
            return iter([*self.fast, *self._files])

    def __len__(self) -> int:
        return len(self.fast) + len(self._files)

    # --- beyond the mapping ------------------------------------------------------------------

    def on_disk(self, key: Any) -> bool:
        return key in self._files

    def serialized(self, key: Any) -> Serialized | None:
        """The pickled frames of a value on disk (sent to a peer as they are, never
        unpickled here), or None when the value is in memory or unknown."""
        with self._lock:
            path = self._files.get(key)
            if path is None:
                return None
            return Serialized(self._read(path))

    def streamable(self, key: Any) -> tuple[Serialized, list[Any]] | None:
        """A value on disk as frames to stream to a peer: its big buffers stay in the file
        (:class:`FileFrame`), never in this process's memory. Returns the frames and the
        open files the caller closes once sent; None when the value is not on disk."""
        with self._lock:
            path = self._files.get(key)
            if path is None:
                return None
            start = time.perf_counter()
            frames, f = open_frames(path, INLINE_LIMIT)
            self.read += os.fstat(f.fileno()).st_size - sum(
                x.nbytes for x in frames if type(x) is FileFrame)
            self.read_seconds += time.perf_counter() - start
            return Serialized(frames), [f]

    def sample(self, process: int) -> list[Command]:
        """Feed a measurement of process memory; spills what the policy orders and returns
        the other orders (pause, resume) for the worker to carry out."""
        with self._lock:
            return self._carry_out(self.policy.handle(MemorySampled(process)))

    @property
    def managed_in_memory(self) -> int:
        return self.policy.fast_bytes

    @property
    def spilled_bytes(self) -> int:
        """The in-memory size of the values on disk (dask's ``spilled_bytes["memory"]``)."""
        return self.policy.slow_bytes

    @property
    def spilled_disk_bytes(self) -> int:
        """The bytes their files take, compressed or not (dask's
        ``spilled_bytes["disk"]``)."""
        return self.policy.disk_bytes

    def close(self) -> None:
        """Delete the spill files (the worker's session is over)."""
        with self._lock:
            self._closed = True
            self.fast.clear()
            self._files.clear()
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    # --- carrying out the policy's orders ----------------------------------------------------

    def _carry_out(self, commands: list[Command], loaded: Any = None) -> list[Command]:
        rest: list[Command] = []
        for cmd in commands:
            kind = type(cmd)
            if kind is Spill:
                for key in cmd.keys:  # type: ignore[attr-defined]
                    self._spill_one(key)
            elif kind is Unspill:
                self._remove_file(cmd.key)  # type: ignore[attr-defined]
                self.fast[cmd.key] = loaded  # type: ignore[attr-defined]
            else:
                rest.append(cmd)
        return rest

    def _spill_one(self, key: Any) -> None:
        # The value stays in ``fast`` until its file is written: ``in`` (lock-free, from
        # the loop answering a peer) must never see a held key in neither place.
        value = self.fast[key]
        policy = self.policy
        if policy.disk_full:  # an earlier value of the batch did not fit under max-spill
            policy.spill_refused(key)
            return
        try:
            frames = list(dumps(value).frames)
            start = time.perf_counter()  # compressing counts as writing
            parts = _packed(frames, self.compression)
            if not policy.admit_spill(key, _packed_size(parts)):
                logger.warning(
                    "worker's spill files reached distributed.worker.memory.max-spill (%d "
                    "bytes on disk, cap %s): keeping %r and further values in memory; raise "
                    "max-spill or give the workers more memory",
                    policy.disk_bytes, policy.limits.max_spill, key)
                return
            path = os.path.join(self._directory(), f"{next(self._names)}.spill")
            self._write(path, parts, start)
        except Exception as exc:  # unpicklable, or the disk is full: it stays in memory
            logger.warning("worker could not spill %r to disk (%s: %s); keeping it in memory",
                           key, type(exc).__name__, exc)
            self.policy.handle(SpillFailed(key))
            return
        self._files[key] = path
        del self.fast[key]

    def _write(self, path: str, parts: list[Any], start: float) -> None:
        self.written += _write_packed(path, parts)
        self.write_seconds += time.perf_counter() - start

    def _read(self, path: str) -> list[Any]:
        start = time.perf_counter()
        frames = read_frames(path)
        self.read += os.path.getsize(path)
        self.read_seconds += time.perf_counter() - start
        return frames

    def _remove_file(self, key: Any) -> bool:
        path = self._files.pop(key, None)
        if path is None:
            return False
        try:
            os.unlink(path)
        except OSError as exc:
            logger.warning("worker could not delete spill file %s: %s", path, exc)
        return True

    def _directory(self) -> str:
        if self._dir is None:
            parent = self._parent or tempfile.gettempdir()
            os.makedirs(parent, exist_ok=True)
            self._dir = tempfile.mkdtemp(prefix="shoal-spill-", dir=parent)
        return self._dir


_MISSING = object()
