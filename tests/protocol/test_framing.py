"""Messages through encode → bytes → FrameDecoder → decode, and malformed input."""

from __future__ import annotations

import random
import re
import struct
from typing import Any

import msgpack
import numpy as np
import pytest

from shoal.protocol import _messages as m
from shoal.protocol._framing import MAX_FRAME_BYTES, MAX_FRAMES, FrameDecoder, decode, encode
from shoal.protocol._messages import ProtocolError, from_wire, message_kinds
from shoal.protocol._serialize import INLINE_LIMIT, Serialized, dumps, loads

from ._samples import SAMPLES, wire_content


def wire(messages: list[m.Message]) -> bytes:
    return b"".join(bytes(memoryview(b)) for b in encode(messages))


def feed(decoder: FrameDecoder, data: bytes, sizes: Any) -> list[list[Any]]:
    """Push ``data`` into the decoder as a transport would, ``next(sizes)`` bytes at a time
    (never more than the buffer it offers)."""
    batches: list[list[Any]] = []
    pos = 0
    while pos < len(data):
        buf = decoder.get_buffer(-1)
        assert len(buf) > 0
        n = min(len(buf), next(sizes), len(data) - pos)
        buf[:n] = data[pos : pos + n]
        pos += n
        batches.extend(decoder.buffer_updated(n))
    return batches


def ones() -> Any:
    while True:
        yield 1


def random_sizes(seed: int, top: int) -> Any:
    rng = random.Random(seed)
    while True:
        yield rng.randint(1, top)


# --- every message kind ---------------------------------------------------------------------


def test_samples_cover_every_message_kind() -> None:
    assert set(SAMPLES) == set(message_kinds())
    for tag, msg in SAMPLES.items():
        assert type(msg) is message_kinds()[tag]
        assert msg.tag == tag


@pytest.mark.parametrize("tag", sorted(SAMPLES))
def test_message_round_trips_through_encode_decode(tag: str) -> None:
    msg = SAMPLES[tag]
    (back,) = decode(encode([msg])[1:])
    assert type(back) is type(msg)
    assert wire_content(back) == wire_content(msg)


@pytest.mark.parametrize("tag", sorted(SAMPLES))
def test_message_round_trips_through_from_wire(tag: str) -> None:
    msg = SAMPLES[tag]
    assert from_wire(msg.to_wire()) == msg


def test_batch_of_all_kinds_keeps_order() -> None:
    msgs = list(SAMPLES.values())
    back = decode(encode(msgs)[1:])
    assert [type(b) for b in back] == [type(x) for x in msgs]
    assert [wire_content(b) for b in back] == [wire_content(x) for x in msgs]


def test_tuple_keys_stay_hashable_tuples() -> None:
    (back,) = decode(encode([m.Data(1, {("x", 0): Serialized([b"v"])}, [("y", 1)], {})])[1:])
    assert isinstance(back, m.Data)
    assert list(back.items) == [("x", 0)]
    assert back.missing[0] == ("y", 1)


def test_keys_with_numpy_integers_travel_as_the_equal_python_keys() -> None:
    # dask's ``x.vindex[...]`` names its output ``("vindex-merge-...", np.int64(0))``; the
    # batch carrying it could not be encoded, was dropped, and the computation hung.
    key = ("vindex-merge-abc", np.int64(0))
    (back,) = decode(encode([m.ReleaseKeys([key, ("f", np.float32(0.5)), ("u", np.uint8(3))])])[1:])
    assert isinstance(back, m.ReleaseKeys)
    assert list(back.keys) == [("vindex-merge-abc", 0), ("f", 0.5), ("u", 3)]
    assert back.keys[0] == key and hash(back.keys[0]) == hash(key)  # the same dict entry
    assert type(back.keys[0][1]) is int and type(back.keys[1][1]) is float


def test_sets_are_sent_as_arrays() -> None:
    (back,) = decode(encode([m.FreeKeys({"a"})])[1:])  # type: ignore[arg-type]
    assert isinstance(back, m.FreeKeys) and list(back.keys) == ["a"]


def test_unencodable_field_is_a_type_error_naming_the_type() -> None:
    with pytest.raises(TypeError, match="object"):
        encode([m.Close(object())])  # type: ignore[arg-type]


def test_an_encoded_batch_is_not_changed_by_later_encodes() -> None:
    """The packers are reused per thread: what one encode returned must not alias them."""
    first = encode([m.TaskDone("a", 1, "int", 0.0, 1.0, 0, Serialized([b"first"]), 1)])
    kept = [bytes(b) for b in first]
    for i in range(3):
        encode([m.TaskDone(f"k{i}", 2, "str", 0.0, 1.0, 0, Serialized([b"other" * 50]), 2)])
    assert [bytes(b) for b in first] == kept
    (back,) = decode(first[1:])
    assert isinstance(back, m.TaskDone) and back.key == "a" and back.inline == Serialized([b"first"])


def test_encode_called_again_while_encoding_gives_both_batches_intact() -> None:
    """A finalizer (or anything run while packing) that sends a message re-enters encode
    on the same thread: it must get its own packers, not corrupt the outer batch."""
    inner: list[Any] = []

    class Reentrant(set):  # type: ignore[type-arg]
        def __iter__(self) -> Any:
            inner.append(encode([m.Store("inner", Serialized([b"in"]), 2)]))
            return super().__iter__()

    outer = encode([m.Store("outer", Serialized([b"out"]), 3),
                    m.FreeKeys(Reentrant({"x"})),
                    m.Store("after", Serialized([b"later"]), 5)])
    backs = decode(outer[1:])
    assert [type(b) for b in backs] == [m.Store, m.FreeKeys, m.Store]
    assert backs[0].data == Serialized([b"out"]) and backs[2].data == Serialized([b"later"])  # type: ignore[attr-defined]
    (back,) = decode(inner[0][1:])
    assert isinstance(back, m.Store) and back.key == "inner" and back.data == Serialized([b"in"])


def test_threads_encoding_at_once_each_get_their_own_batches() -> None:
    import threading

    results: dict[int, list[list[Any]]] = {}

    def run(t: int) -> None:
        results[t] = [encode([m.Store(f"{t}-{i}", Serialized([bytes([t]) * (i + 1)]), i)])
                      for i in range(200)]

    threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    for t in range(4):
        for i, buffers in enumerate(results[t]):
            (back,) = decode(buffers[1:])
            assert isinstance(back, m.Store) and back.key == f"{t}-{i}"
            assert back.data == Serialized([bytes([t]) * (i + 1)])


# --- Serialized payloads ---------------------------------------------------------------------


def test_small_payload_frames_travel_inline() -> None:
    ser = Serialized([b"h", b"x" * 100])
    buffers = encode([m.Store("k", ser, 101)])
    assert len(buffers) == 2  # prefix + header only
    (back,) = decode(buffers[1:])
    assert isinstance(back, m.Store) and back.data == ser


@pytest.mark.parametrize("frame", [b"", b"p" * 100, b"q" * INLINE_LIMIT, bytearray(b"ba"),
                                   memoryview(b"mv")])
def test_one_frame_payloads_round_trip(frame: Any) -> None:
    """A payload of one frame (the common task payload or result) travels as the bare
    frame; bytes-likes other than bytes, and frames past the inline limit, as before."""
    ser = Serialized([frame])
    (back,) = decode(encode([m.Store("k", ser, 1)])[1:])
    assert isinstance(back, m.Store) and back.data == ser
    assert [type(f) for f in back.data.frames] == [bytes]  # type: ignore[attr-defined]


def test_large_payload_frames_travel_out_of_band() -> None:
    big = b"y" * (INLINE_LIMIT + 1)
    ser = Serialized([b"h", b"small", big])
    buffers = encode([m.Store("k", ser, len(big))])
    assert len(buffers) == 3
    assert buffers[2] is big  # not copied into the header
    assert len(buffers[1]) < 1000
    (back,) = decode(buffers[1:])
    assert isinstance(back, m.Store) and back.data == ser


def test_several_out_of_band_payloads_in_one_batch() -> None:
    a, b = b"a" * (INLINE_LIMIT + 5), b"b" * (INLINE_LIMIT + 7)
    msgs = [m.Store("a", Serialized([b"h", a]), 1), m.Store("b", Serialized([b"h", b]), 1)]
    batches = feed(FrameDecoder(), wire(msgs), random_sizes(1, 50_000))
    (frames,) = batches
    back = decode(frames)
    assert [bytes(x.data.frames[1]) for x in back] == [a, b]  # type: ignore[attr-defined]


@pytest.mark.parametrize("size", [1000, 1 << 20])  # inline and out-of-band
def test_numpy_array_round_trips_intact_and_writable(size: int) -> None:
    arr = np.random.default_rng(0).random(size // 8)
    msg = m.KeyDone("x", arr.nbytes, "ndarray", dumps(arr))
    (frames,) = feed(FrameDecoder(), wire([msg]), random_sizes(2, 300_000))
    (back,) = decode(frames)
    assert isinstance(back, m.KeyDone) and back.inline is not None
    value = loads(back.inline)
    assert isinstance(value, np.ndarray)
    np.testing.assert_array_equal(value, arr)
    assert value.flags.writeable
    value[0] = -1.0  # really writable


# --- FrameDecoder ------------------------------------------------------------------------------


def test_decoder_byte_by_byte() -> None:
    msgs = [SAMPLES["compute"], SAMPLES["data"], SAMPLES["hello"]]
    (frames,) = feed(FrameDecoder(), wire(msgs), ones())
    assert [wire_content(x) for x in decode(frames)] == [wire_content(x) for x in msgs]


@pytest.mark.parametrize("seed", range(5))
def test_decoder_random_chunks_many_batches(seed: int) -> None:
    rng = random.Random(seed)
    kinds = sorted(SAMPLES)
    batches = []
    for _ in range(30):
        msgs = [SAMPLES[rng.choice(kinds)] for _ in range(rng.randint(1, 4))]
        if rng.random() < 0.2:
            big = bytes(rng.getrandbits(8) for _ in range(16)) * rng.randint(5_000, 20_000)
            msgs.append(m.Store("big", Serialized([b"h", big]), len(big)))
        batches.append(msgs)
    data = b"".join(wire(msgs) for msgs in batches)
    got = feed(FrameDecoder(), data, random_sizes(seed, 70_000))
    assert len(got) == len(batches)
    for frames, msgs in zip(got, batches, strict=True):
        assert [wire_content(x) for x in decode(frames)] == [wire_content(x) for x in msgs]


def test_several_batches_in_one_chunk() -> None:
    batches = [[SAMPLES["hello"]], [SAMPLES["free-keys"], SAMPLES["close"]], [SAMPLES["run"]]]
    data = b"".join(wire(b) for b in batches)
    decoder = FrameDecoder()
    buf = decoder.get_buffer(-1)
    assert len(buf) >= len(data)
    buf[: len(data)] = data
    got = decoder.buffer_updated(len(data))
    assert [[type(x) for x in decode(f)] for f in got] == [[type(x) for x in b] for b in batches]


def test_batch_split_across_chunks_then_more_in_same_chunk() -> None:
    one, two = wire([SAMPLES["hello"]]), wire([SAMPLES["close"]])
    decoder = FrameDecoder()
    cut = len(one) - 3
    assert feed(decoder, one[:cut], iter([cut])) == []
    (a, b) = feed(decoder, one[cut:] + two, iter([len(one) - cut + len(two)]))
    assert decode(a) == [SAMPLES["hello"]]
    assert decode(b) == [SAMPLES["close"]]


def test_big_frame_is_received_in_place() -> None:
    big = b"z" * (1 << 20)
    data = wire([m.Store("k", Serialized([b"h", big]), len(big))])
    decoder = FrameDecoder()
    sizes = random_sizes(3, 100_000)
    offered = []
    pos, got = 0, []
    while pos < len(data):
        buf = decoder.get_buffer(-1)
        offered.append(len(buf))
        n = min(len(buf), next(sizes), len(data) - pos)
        buf[:n] = data[pos : pos + n]
        pos += n
        got.extend(decoder.buffer_updated(n))
    assert max(offered) >= (1 << 20) - 100_000  # the transport writes straight into it
    (frames,) = got
    assert bytes(frames[1]) == big


# --- malformed input ---------------------------------------------------------------------------


def packed(obj: Any) -> list[Any]:
    return [msgpack.packb(obj, use_bin_type=True)]


@pytest.mark.parametrize(
    "frames, words",
    [
        (packed([("no-such-message", 1)]), "unknown message tag"),
        (packed([("close",)]), "needs 1 fields, got 0"),
        (packed([("close", "a", "b")]), "needs 1 fields, got 2"),
        (packed({"close": "x"}), "must be an array"),
        (packed(42), "must be an array"),
        (packed([42]), "tag"),
        (packed([()]), "tag"),
        (packed([(1, "x")]), "tag"),
        (packed([("close", msgpack.ExtType(7, b""))]), "extension type 7"),
        (packed([("close", msgpack.ExtType(1, msgpack.packb([1])))]), "missing frame 1"),
        (packed([("close", msgpack.ExtType(1, msgpack.packb([0])))]), "missing frame 0"),
        (packed([("close", msgpack.ExtType(1, msgpack.packb([-1])))]), "missing frame -1"),
        (packed([("close", msgpack.ExtType(1, msgpack.packb(3)))]), "malformed"),
        (packed([("close", msgpack.ExtType(1, msgpack.packb([1.5])))]), "malformed"),
        (packed([("close", msgpack.ExtType(1, b"\xc1"))]), "undecodable"),
        ([b"\x93\x01"], "undecodable"),  # truncated array
        ([b"\xc1"], "undecodable"),  # reserved byte
        ([b""], "undecodable"),
        ([], "undecodable"),  # no frames at all
    ],
)
def test_malformed_batch_raises_protocol_error(frames: list[Any], words: str) -> None:
    with pytest.raises(ProtocolError, match=words):
        decode(frames)


def test_out_of_range_reference_with_other_frames_present() -> None:
    ext = msgpack.ExtType(1, msgpack.packb([b"head", 2]))
    frames = [msgpack.packb([("store", "k", ext, 1)], use_bin_type=True), b"only one"]
    with pytest.raises(ProtocolError, match="missing frame 2"):
        decode(frames)


def test_unhashable_map_key_is_a_protocol_error() -> None:
    raw = b"\x91\x92\xa5close\x81\x80\x01"  # [("close", {{}: 1})]
    with pytest.raises(ProtocolError):
        decode([raw])


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes_raise_only_protocol_error(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(200):
        blob = rng.randbytes(rng.randint(0, 64))
        try:
            decode([blob])
        except ProtocolError:
            pass


@pytest.mark.parametrize("seed", range(10))
def test_corrupted_encodings_raise_only_protocol_error(seed: int) -> None:
    rng = random.Random(seed)
    kinds = sorted(SAMPLES)
    for _ in range(200):
        head = bytearray(encode([SAMPLES[rng.choice(kinds)]])[1])
        for _ in range(rng.randint(1, 4)):
            head[rng.randrange(len(head))] = rng.getrandbits(8)
        if rng.random() < 0.3:
            del head[rng.randrange(len(head)) :]
        try:
            decode([bytes(head)])
        except ProtocolError:
            pass


def test_zero_frame_count_is_a_protocol_error() -> None:
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError, match="frame count 0"):
        feed(decoder, struct.pack("<I", 0), ones())


def test_too_many_frames_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="frame count"):
        feed(FrameDecoder(), struct.pack("<I", MAX_FRAMES + 1), ones())


def test_frame_larger_than_allowed_is_a_protocol_error() -> None:
    header = struct.pack("<IQ", 1, MAX_FRAME_BYTES + 1)
    with pytest.raises(ProtocolError, match="larger than the protocol allows"):
        feed(FrameDecoder(), header, ones())


def test_announced_frame_that_cannot_be_allocated_is_a_protocol_error() -> None:
    """A peer announcing a frame as large as the limit must not crash the reader with
    MemoryError (nor allocate a terabyte up front): it is the peer's fault."""
    header = struct.pack("<IQ", 1, MAX_FRAME_BYTES) + b"abc"
    with pytest.raises(ProtocolError):
        feed(FrameDecoder(), header, iter([len(header)]))


@pytest.mark.parametrize("seed", range(10))
def test_random_wire_bytes_raise_only_protocol_error(seed: int) -> None:
    """Random bytes on the stream: the decoder either waits for more, or raises
    ProtocolError (here or when a completed batch is decoded)."""
    rng = random.Random(seed)
    for _ in range(50):
        count = rng.randint(1, 3)
        lengths = [rng.randint(0, 40) for _ in range(count)]
        data = struct.pack(f"<I{count}Q", count, *lengths) + rng.randbytes(sum(lengths) + 8)
        try:
            for frames in feed(FrameDecoder(), data, random_sizes(seed, 16)):
                decode(frames)
        except ProtocolError:
            pass


@pytest.mark.parametrize(
    ("item", "words"),
    [
        (("release-keys", 5), "field 'keys' must be list or tuple, got int"),
        (("hello", "client", "1", "me"), "field 'version' must be int, got str"),
        (("compute", "k", b"not serialized", (), {}, 0, False, "p", 1, ()), "field 'payload'"),
        (("key-done", {"a": 1}, 1, "int", None, None), "field 'key'"),
    ],
)
def test_fields_of_the_wrong_type_are_a_protocol_error(item: Any, words: str) -> None:
    with pytest.raises(ProtocolError, match=re.escape(words)):
        from_wire(item)


@pytest.mark.parametrize(
    ("item", "words"),
    [
        (("update-graph", ((1, 2),), (), {}, None, None, False, 0, None),
         "row 0 must be an array of 8 items"),
        (
            ("update-graph", (("k", b"raw", (), (), 0, 0, None, "p"),), (), {}, None, None, False, 0,
             None),
            "row 0 item 1 must be Serialized or NoneType",
        ),
        (("update-graph", (), (), {}, None, None, True, 1, ("k", {"not": "a key"})),
         "'update-graph held' must hold keys"),
        (("scatter", 1, (("k", Serialized([b"x"]), "big", "int"),), None, False), "row 0 item 2"),
    ],
)
def test_nested_rows_of_the_wrong_shape_are_a_protocol_error(item: Any, words: str) -> None:
    with pytest.raises(ProtocolError, match=re.escape(words)):
        from_wire(item)


# --- the columnar batches (Computes, TasksDone): each row checked as its message would be ----

S = Serialized([b"x"])
# A valid row set of each, as msgpack decodes it (tuples), to spoil one column at a time.
COMPUTES = ("computes-as-columns", ("a", "b"), (S, S), ((("d", ("w1",), 8),), ()), {},
            ((0,), (1,)), (True, False), (1, 2), ((), ("d",)))
TASKS_DONE = ("tasks-done-as-columns", ("a", "b"), (8, 8), ("int", "int"), (1.0, 1.5),
              (2.0, 2.5), (1, 1), (None, S), (1, 2), ((), ("d",)), (b"cls", None))


def spoiled(item: tuple[Any, ...], index: int, column: Any) -> tuple[Any, ...]:
    return (*item[:index], column, *item[index + 1:])


def test_valid_columnar_batches_decode() -> None:
    computes = from_wire(COMPUTES)
    assert isinstance(computes, m.Computes) and computes.keys == ("a", "b")
    done = from_wire(TASKS_DONE)
    assert isinstance(done, m.TasksDone) and done.inlines == (None, S)


@pytest.mark.parametrize(
    ("item", "words"),
    [
        (spoiled(COMPUTES, 2, (S,)), "column 'payloads' has 1 rows, not one per key (2)"),
        (spoiled(COMPUTES, 1, ("a", {"x": 1})), "row 1 of 'keys' must be"),
        (spoiled(COMPUTES, 2, (S, b"raw")), "row 1 of 'payloads' must be Serialized, got bytes"),
        (spoiled(COMPUTES, 3, ((), (("d", ("w1",)),))), "row 0 must be an array of 3 items"),
        (spoiled(COMPUTES, 3, ((), (("d", ("w1",), "8"),))), "row 0 item 2 must be int"),
        (spoiled(COMPUTES, 6, (True, 1)), "row 1 of 'send_inline' must be bool, got int"),
        (spoiled(COMPUTES, 7, (1, 2.0)), "row 1 of 'runs' must be int, got float"),
        (spoiled(COMPUTES, 8, ((), ({},))), "must hold keys"),
        (spoiled(COMPUTES, 5, ((0,),)), "column 'priorities' has 1 rows"),
        (spoiled(COMPUTES, 1, "ab"), "field 'keys' must be list or tuple, got str"),
        (COMPUTES[:-1], "needs 8 fields, got 7"),
        (spoiled(TASKS_DONE, 2, (8, None)), "row 1 of 'nbytes' must be int, got NoneType"),
        (("keys-done-as-columns", ("a", "b"), (8, 8), ("int",), (None, None), (None, None)),
         "column 'typenames' has 1 rows"),
        (("keys-done-as-columns", ("a",), (8,), ("int",), (b"raw",), (None,)),
         "row 0 of 'inlines' must be NoneType or Serialized, got bytes"),
        (("keys-done-as-columns", ("a",), (8,), ("int",), (None,), ("cls",)),
         "row 0 of 'pickled_types' must be NoneType or bytes, got str"),
        (spoiled(TASKS_DONE, 10, (b"cls",)), "column 'pickled_types' has 1 rows"),
        (spoiled(TASKS_DONE, 3, ("int", 5)), "row 1 of 'typenames' must be str, got int"),
        (spoiled(TASKS_DONE, 4, (1.0, "now")), "row 1 of 'starts' must be float or int, got str"),
        (spoiled(TASKS_DONE, 7, (None, b"raw")), "row 1 of 'inlines' must be NoneType or Serialized"),
        (spoiled(TASKS_DONE, 8, (1,)), "column 'runs' has 1 rows"),
        (spoiled(TASKS_DONE, 9, ((), 5)), "row 1 of 'dropped' must be list or tuple, got int"),
        (spoiled(TASKS_DONE, 9, ((), ((1, 2), [3]))), "must hold keys"),
    ],
)
def test_bad_rows_of_a_columnar_batch_are_a_protocol_error(item: Any, words: str) -> None:
    with pytest.raises(ProtocolError, match=re.escape(words)):
        from_wire(item)


def test_a_columnar_batch_with_a_bad_row_fails_its_whole_wire_batch() -> None:
    bad = msgpack.packb([("free-keys", ["x"]), spoiled(TASKS_DONE, 6, (1, "t"))],
                        use_bin_type=True, default=lambda o: msgpack.ExtType(2, o.frames[0]))
    with pytest.raises(ProtocolError, match="row 1 of 'threads' must be int"):
        decode([bad])
