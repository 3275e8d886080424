"""Bytes in, messages out: the frame format and the msgpack encoding of message batches.

Owns: the layout of a frame on the wire and the limits that keep a hostile peer from making
us allocate without bound. Must not know about sockets or event loops.

Layout of one batch: ``u32 nframes``, then ``nframes`` times ``u64 length``, then the frames.
Frame 0 is a msgpack array of message tuples. Serialized payloads larger than
``INLINE_LIMIT`` travel as their own frames (out-of-band, never copied into frame 0); one
of a single small frame is a msgpack ext holding that frame (``_EXT_ONE_FRAME``). A
:class:`FileFrame` stands for a frame whose bytes are still in a file (a spilled value
served to a peer): encoding counts its length, the connection streams its bytes.
"""

from __future__ import annotations

import numbers
import struct
import threading
from typing import Any

import msgpack

from shoal.protocol._messages import Message, ProtocolError, from_wire
from shoal.protocol._serialize import INLINE_LIMIT, Serialized

MAX_FRAMES = 1 << 20
MAX_FRAME_BYTES = 1 << 40
_EXT_SERIALIZED = 1
# A Serialized of one small frame (a task payload, a small result): the ext data is the
# frame itself, with no nested msgpack array to pack and unpack per task.
_EXT_ONE_FRAME = 2
_BIG = 256 * 1024  # frames above this are received straight into their own buffer
_U32 = struct.Struct("<I")
_new_tuple = tuple.__new__
_U64 = struct.Struct("<Q")
_ONE_FRAME = struct.Struct("<IQ")  # the header of a batch of one frame


class FileFrame:
    """``nbytes`` bytes of the open binary ``file`` from ``offset``: a frame left on disk."""

    __slots__ = ("file", "nbytes", "offset")

    def __init__(self, file: Any, offset: int, nbytes: int) -> None:
        self.file = file
        self.offset = offset
        self.nbytes = nbytes


def _size(frame: Any) -> int:
    return frame.nbytes if type(frame) is FileFrame else memoryview(frame).nbytes


class _Encoder:
    """One thread's msgpack packers, reused from batch to batch.

    ``msgpack.packb`` builds a new ``Packer`` per call, and each one mallocs a 256 KiB
    buffer: per task (every inline result is a nested pack) that was an ``mmap``/``munmap``
    pair whenever glibc's mmap threshold is frozen (any ``MALLOC_TRIM_THRESHOLD_``, which
    dask's config sets). A packer is never shared between threads (``threading.local``),
    never re-entered (``busy``: a finalizer running ``encode`` in the middle of a pack gets
    fresh packers), and ``autoreset`` makes each ``pack`` return new ``bytes``, so nothing
    returned aliases the reused buffer."""

    def __init__(self) -> None:
        self.busy = False
        self.oob: list[Any] = []
        self.inner = msgpack.Packer(use_bin_type=True, autoreset=True)
        self.outer = msgpack.Packer(default=self.default, use_bin_type=True, autoreset=True)

    def default(self, obj: Any) -> Any:
        if isinstance(obj, Serialized):
            frames = obj.frames
            if len(frames) == 1:
                only = frames[0]
                if type(only) is bytes and len(only) <= INLINE_LIMIT:
                    # ExtType's own __new__ only checks the types, known here; skipped
                    # (it was a third of this per-task callback).
                    return _new_tuple(msgpack.ExtType, (_EXT_ONE_FRAME, only))
            oob = self.oob
            parts: list[Any] = []
            for frame in obj.frames:
                if type(frame) is FileFrame:
                    size = frame.nbytes
                else:
                    size = memoryview(frame).nbytes
                if size <= INLINE_LIMIT and type(frame) is not FileFrame:
                    parts.append(bytes(frame) if not isinstance(frame, bytes) else frame)
                else:
                    parts.append(len(oob) + 1)
                    oob.append(frame)
            return msgpack.ExtType(_EXT_SERIALIZED, self.inner.pack(parts))
        if isinstance(obj, (set, frozenset)):
            return list(obj)
        # A numpy scalar inside a key: dask names ``x.vindex[...]``'s output
        # ``(name, np.int64(0))``. It travels as the equal Python number (same hash, so
        # the same dict entry on every side); refused, its batch was dropped and the
        # computation hung. (numpy's floats are Python floats already.)
        if isinstance(obj, numbers.Integral) and not isinstance(obj, bool):
            return int(obj)
        if isinstance(obj, numbers.Real):
            return float(obj)
        raise TypeError(f"cannot encode {type(obj).__name__} in a message")

    def encode(self, messages: list[Message]) -> list[Any]:
        self.busy = True
        oob: list[Any] = []
        self.oob = oob
        try:
            head = self.outer.pack([m.to_wire() for m in messages])
        finally:
            self.oob = []
            self.busy = False
        if not oob:  # most batches: one frame, no format to build
            return [_ONE_FRAME.pack(1, len(head)), head]
        lengths = [len(head), *(_size(f) for f in oob)]
        prefix = struct.pack(f"<I{len(lengths)}Q", len(lengths), *lengths)
        return [prefix, head, *oob]


_encoders = threading.local()


def encode(messages: list[Message]) -> list[Any]:
    """Encode a batch of messages into buffers ready for ``transport.writelines`` (and
    :class:`FileFrame` objects, which only ``TCPConnection.send_streamed`` writes)."""
    encoder: _Encoder | None = getattr(_encoders, "encoder", None)
    if encoder is None:
        encoder = _encoders.encoder = _Encoder()
    elif encoder.busy:
        encoder = _Encoder()
    return encoder.encode(messages)


def decode(frames: list[Any]) -> list[Message]:
    """Decode one batch's frames into messages, or raise :class:`ProtocolError`."""

    def ext_hook(code: int, data: bytes) -> Any:
        if code == _EXT_ONE_FRAME:
            return Serialized([data])
        if code != _EXT_SERIALIZED:
            raise ProtocolError(f"unknown msgpack extension type {code}")
        parts = msgpack.unpackb(data, use_list=True, raw=False)
        if not isinstance(parts, list):
            raise ProtocolError("malformed serialized payload")
        for i, part in enumerate(parts):
            if isinstance(part, int):
                if not 1 <= part < len(frames):
                    raise ProtocolError(f"payload refers to missing frame {part}")
                parts[i] = frames[part]
            elif not isinstance(part, bytes):
                raise ProtocolError("malformed serialized payload")
        # A tuple: results and payloads are kept (a task's inputs, a client's inline
        # results), and a one-frame tuple is half the size of the list.
        return Serialized(tuple(parts))

    try:
        items = msgpack.unpackb(
            frames[0], ext_hook=ext_hook, use_list=False, raw=False, strict_map_key=False
        )
    except ProtocolError:
        raise
    except Exception as exc:
        raise ProtocolError(f"undecodable message batch: {exc}") from exc
    if not isinstance(items, tuple):
        raise ProtocolError("a message batch must be an array")
    return [from_wire(item) for item in items]


def _uninitialized(n: int) -> memoryview:
    """A writable buffer of n bytes that is not zero-filled first (it is about to be
    overwritten by the socket; zeroing 200 MB costs as much as receiving it)."""
    import numpy as np

    buf: Any = np.empty(n, dtype=np.uint8)
    return memoryview(buf).cast("B")


class FrameDecoder:
    """Incremental decoder for ``asyncio.BufferedProtocol``: hands out buffers to fill and
    returns each complete batch as a list of frames. Large frames are received in place."""

    def __init__(self) -> None:
        self._stage = bytearray(1 << 16)
        self._start = 0
        self._end = 0
        self._lengths: list[int] | None = None
        self._frames: list[Any] = []
        self._big: memoryview | None = None
        self._big_pos = 0

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._big is not None:
            return self._big[self._big_pos :]
        if self._end == len(self._stage):
            if self._start > 0:
                pending = self._end - self._start
                self._stage[:pending] = self._stage[self._start : self._end]
                self._start, self._end = 0, pending
            else:
                self._stage.extend(bytes(len(self._stage)))
        return memoryview(self._stage)[self._end :]

    def buffer_updated(self, nbytes: int) -> list[list[Any]]:
        if self._big is not None:
            self._big_pos += nbytes
            if self._big_pos < len(self._big):
                return []
            self._frames.append(self._big)
            self._big = None
        else:
            self._end += nbytes
        return self._parse()

    def _available(self) -> int:
        return self._end - self._start

    def _take(self, n: int) -> bytes:
        out = bytes(self._stage[self._start : self._start + n])
        self._start += n
        return out

    def _parse(self) -> list[list[Any]]:
        start, end = self._start, self._end
        if self._lengths is None and end - start >= 12:
            # Most reads: whole batches of one frame (a report, a compute), taken without
            # the general loop's steps.
            stage = self._stage
            n, need = _ONE_FRAME.unpack_from(stage, start)
            begin = start + 12
            if n == 1 and need == end - begin:
                self._start = self._end = 0
                return [[bytes(stage[begin:end])]]
        batches: list[list[Any]] = []
        while True:
            if self._lengths is None:
                if self._available() < 4:
                    break
                (n,) = _U32.unpack_from(self._stage, self._start)
                if not 1 <= n <= MAX_FRAMES:
                    raise ProtocolError(f"invalid frame count {n}")
                if self._available() < 4 + 8 * n:
                    self._reserve(4 + 8 * n)
                    break
                self._start += 4
                if n == 1:  # most batches: no struct format to build, no generator to run
                    lengths = [_U64.unpack_from(self._stage, self._start)[0]]
                else:
                    lengths = list(struct.unpack_from(f"<{n}Q", self._stage, self._start))
                self._start += 8 * n
                if max(lengths) > MAX_FRAME_BYTES:
                    raise ProtocolError("frame larger than the protocol allows")
                self._lengths = lengths
                self._frames = []
            assert self._lengths is not None
            while len(self._frames) < len(self._lengths):
                need = self._lengths[len(self._frames)]
                have = self._available()
                if need <= have:
                    self._frames.append(self._take(need))
                elif need > _BIG:
                    try:
                        big = _uninitialized(need)
                    except MemoryError:
                        raise ProtocolError(
                            f"the peer announced a frame of {need} bytes, more than this "
                            "process can allocate"
                        ) from None
                    big[:have] = self._stage[self._start : self._end]
                    self._start = self._end = 0
                    self._big, self._big_pos = big, have
                    return batches
                else:
                    self._reserve(need)
                    return batches
            batches.append(self._frames)
            self._lengths = None
            self._frames = []
            if self._start == self._end:
                self._start = self._end = 0
        return batches

    def _reserve(self, n: int) -> None:
        """Make sure the staging buffer can hold ``n`` bytes from ``_start``."""
        if len(self._stage) - self._start >= n:
            return
        pending = self._stage[self._start : self._end]
        size = max(len(self._stage), n)
        self._stage = bytearray(size)
        self._stage[: len(pending)] = pending
        self._start, self._end = 0, len(pending)
