"""dumps/loads, the function cache and table, and task payloads."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from shoal.protocol import _serialize
from shoal.protocol._serialize import (
    FunctionCache,
    FunctionTable,
    Serialized,
    dumps,
    dumps_task,
    loads,
)


def double(x: int) -> int:
    return 2 * x


def triple(x: int) -> int:
    return 3 * x


def make_adder(n: int) -> Callable[[int], int]:
    def add(x: int) -> int:
        return x + n

    return add


def ship(payload: Any, cache: FunctionCache | None = None) -> Any:
    """Client → worker: pickle a task, hand the function blobs over, unpickle."""
    cache = cache or FunctionCache()
    ser, fids = dumps_task(payload, cache)
    table = FunctionTable()
    table.add_blobs({fid: cache.blobs[fid] for fid in fids})
    return loads(Serialized([bytes(f) for f in ser.frames]), table)


# --- dumps / loads -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [1, "text", b"bytes", (1, "a"), {"k": [1, 2.5, None]}, {1, 2}, ("x", 0)]
)
def test_plain_values_round_trip(value: Any) -> None:
    assert loads(dumps(value)) == value


def test_numpy_buffer_travels_out_of_band() -> None:
    arr = np.arange(10_000, dtype="i8")
    ser = dumps(arr)
    assert len(ser.frames) == 2
    assert ser.frames[1].nbytes == arr.nbytes
    assert len(ser.frames[0]) < 1000
    back = loads(ser)
    np.testing.assert_array_equal(back, arr)


def test_inline_bytes_frames_give_writable_arrays() -> None:
    arr = np.arange(100, dtype="f8")
    ser = dumps(arr)
    back = loads(Serialized([bytes(f) for f in ser.frames]))
    assert back.flags.writeable
    back[0] = 7.0


def test_lambda_falls_back_to_cloudpickle() -> None:
    fn = loads(dumps(lambda x: x * 5))
    assert fn(2) == 10


def test_unpicklable_object_is_a_type_error_naming_it() -> None:
    lock = threading.Lock()
    with pytest.raises(TypeError) as info:
        dumps(lock)
    text = str(info.value)
    assert "lock" in text
    assert "picklable" in text


def test_unpicklable_object_inside_a_container_names_the_container() -> None:
    with pytest.raises(TypeError, match="lock"):
        dumps({"config": threading.Lock()})


def test_unpicklable_task_argument_is_a_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match="lock"):
        dumps_task((double, threading.Lock()), FunctionCache())


def test_serialized_nbytes_and_equality() -> None:
    a = Serialized([b"ab", memoryview(b"cde")])
    assert a.nbytes == 5
    assert a == Serialized([bytearray(b"ab"), b"cde"])
    assert a != Serialized([b"ab", b"cdf"])
    assert "2 frames, 5 bytes" in repr(a)


# --- function cache and table ---------------------------------------------------------------


def test_same_function_same_fid_different_function_different_fid() -> None:
    cache = FunctionCache()
    assert cache.fid(double) == cache.fid(double)
    assert cache.fid(double) != cache.fid(triple)
    assert len(cache.blobs) == 2


def test_function_is_pickled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    base = _serialize._FunctionPickler

    class Counting(base):  # type: ignore[misc, valid-type]
        def dump(self, obj: Any) -> None:
            calls.append(obj)
            super().dump(obj)

    monkeypatch.setattr(_serialize, "_FunctionPickler", Counting)
    cache = FunctionCache()
    for i in range(5):
        dumps_task((double, i), cache)
    assert calls == [double]


def test_dumps_task_lists_fids_once_each() -> None:
    cache = FunctionCache()
    _, fids = dumps_task((double, (triple, 1), (double, 2)), cache)
    assert fids == [cache.fid(double), cache.fid(triple)]
    _, none = dumps_task((1, "no functions"), cache)
    assert none == []


def test_payload_refers_to_functions_by_id_not_by_value() -> None:
    cache = FunctionCache()
    adder = make_adder(1)  # the cache keeps blobs of live functions only
    big, _ = dumps_task((adder,), cache)
    small, _ = dumps_task((1,), cache)
    # the function body is in cache.blobs, not in the payload
    assert big.nbytes < small.nbytes + 200
    assert big.nbytes < len(next(iter(cache.blobs.values())))


def test_module_function_round_trips_through_table() -> None:
    fn, arg = ship((double, 21))
    assert fn(arg) == 42


def test_lambda_round_trips_through_table() -> None:
    fn, arg = ship((lambda x: x + 1, 41))
    assert fn(arg) == 42


def test_closure_round_trips_through_table() -> None:
    fn, arg = ship((make_adder(40), 2))
    assert fn(arg) == 42


def test_nested_functions_in_data_round_trip() -> None:
    out = ship({"ops": [make_adder(1), make_adder(2)], "f": double})
    assert [f(0) for f in out["ops"]] == [1, 2]
    assert out["f"](4) == 8


def test_distinct_closures_get_distinct_fids() -> None:
    cache = FunctionCache()
    assert cache.fid(make_adder(1)) != cache.fid(make_adder(2))


def test_table_knows_received_blobs() -> None:
    cache = FunctionCache()
    fid = cache.fid(triple)
    table = FunctionTable()
    table.add_blobs({fid: cache.blobs[fid]})
    assert fid in table
    assert table.blob(fid) == cache.blobs[fid]
    assert table.function(fid)(3) == 9


def test_function_never_received_is_an_unpickling_error() -> None:
    cache = FunctionCache()
    ser, _ = dumps_task((make_adder(987_654_321),), cache)
    with pytest.raises(pickle.UnpicklingError, match="never received"):
        loads(ser, FunctionTable())


def test_unpicklable_function_is_a_type_error_naming_it() -> None:
    lock = threading.Lock()

    def uses_lock() -> None:
        with lock:
            pass

    with pytest.raises(TypeError, match="uses_lock"):
        FunctionCache().fid(uses_lock)


# --- classes the receiver cannot import -----------------------------------------------------


def _main_class(name: str) -> type:
    """A class that pickle finds in ``__main__`` (as a script's class is)."""
    import sys

    cls = type(name, (), {"__init__": lambda self, n: setattr(self, "n", n)})
    cls.__module__ = "__main__"
    setattr(sys.modules["__main__"], name, cls)
    return cls


def test_main_class_instance_travels_by_value() -> None:
    import sys

    cls = _main_class("ShoalTestConfig")
    try:
        ser = dumps(cls(5))
    finally:
        delattr(sys.modules["__main__"], "ShoalTestConfig")
    # the receiving process's __main__ has no such class: it must come with the data
    assert loads(ser).n == 5


def test_main_class_in_a_task_payload_travels_by_value() -> None:
    import sys

    cls = _main_class("ShoalTestPayload")
    try:
        cache = FunctionCache()
        ser, fids = dumps_task((double, cls(3)), cache)
    finally:
        delattr(sys.modules["__main__"], "ShoalTestPayload")
    table = FunctionTable()
    table.add_blobs({fid: cache.blobs[fid] for fid in fids})
    fn, obj = loads(ser, table)
    assert fn(obj.n) == 6


def test_local_class_instances_round_trip_in_data_and_payloads() -> None:
    from typing import NamedTuple

    class Pair(NamedTuple):
        a: int
        b: int

    assert loads(dumps(Pair(1, 2))) == (1, 2)
    fn, arg = ship((double, Pair(3, 4)))
    assert fn(arg.b) == 8


def test_payload_with_a_module_object_falls_back_to_cloudpickle() -> None:
    import math

    fn, mod = ship((double, math))
    assert mod.sqrt(fn(8)) == 4.0


# --- the function cache never serves a stale copy -----------------------------------------

_factor = 2


def test_fid_changes_when_a_global_of_a_by_value_function_is_rebound() -> None:
    global _factor

    def scaled(x: int) -> int:
        return x * _factor

    cache = FunctionCache()
    _factor = 2
    first = cache.fid(scaled)
    assert cache.fid(scaled) == first
    _factor = 3
    second = cache.fid(scaled)
    assert second != first
    table = FunctionTable()
    table.add_blobs({second: cache.blobs[second]})
    assert table.function(second)(10) == 30


def test_fid_changes_when_a_closure_cell_changes() -> None:
    n = 1

    def add(x: int) -> int:
        return x + n

    cache = FunctionCache()
    first = cache.fid(add)
    n = 2
    assert cache.fid(add) != first
    assert add(0) == 2


def test_by_reference_function_is_cached_by_identity_alone() -> None:
    cache = FunctionCache()
    cache.fid(double)
    assert cache._by_id[id(double)][2] is None


def test_recursive_local_function_is_not_kept_alive_by_the_cache() -> None:
    import gc
    import weakref

    cache = FunctionCache()

    def make() -> Any:
        def countdown(n: int) -> int:
            return 0 if n == 0 else countdown(n - 1)

        return countdown

    fn = make()
    cache.fid(fn)
    ref = weakref.ref(fn)
    del fn
    gc.collect()
    assert ref() is None
    assert cache._by_id == {}


def test_costly_to_pickle_is_about_big_object_heavy_values() -> None:
    from shoal.protocol._serialize import OFFLOAD_BYTES, costly_to_pickle

    big = OFFLOAD_BYTES * 4
    assert not costly_to_pickle([1, 2], 100)
    assert costly_to_pickle(list(range(10)), big)
    assert not costly_to_pickle(np.zeros(10), big)  # buffers go out of band
    assert not costly_to_pickle(b"x", big)
    assert costly_to_pickle(np.array([None] * 3, dtype=object), big)


def test_costly_to_load_looks_at_the_in_band_stream() -> None:
    from shoal.protocol._serialize import OFFLOAD_BYTES, costly_to_load

    assert not costly_to_load(dumps(np.zeros(OFFLOAD_BYTES)))  # 8 MB out of band
    assert costly_to_load(dumps([str(i) for i in range(OFFLOAD_BYTES // 4)]))


def test_blob_of_a_function_that_just_died_is_still_there_to_send() -> None:
    cache = FunctionCache()
    fid = cache.fid(make_adder(5))  # dies at once
    assert fid not in cache.blobs
    assert cache.blob(fid)


def test_local_class_is_pickled_once_per_batch_and_afresh_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Point:
        scale = 1

    calls: list[Any] = []
    real = _serialize.cloudpickle.dumps

    def counting(obj: Any, *args: Any, **kwargs: Any) -> bytes:
        calls.append(obj)
        return real(obj, *args, **kwargs)

    monkeypatch.setattr(_serialize.cloudpickle, "dumps", counting)
    cache = FunctionCache()
    with cache.batch():
        for _ in range(10):
            dumps_task((double, Point()), cache)
    assert calls.count(Point) == 1
    Point.scale = 5  # a later submission sees the class as it is now
    ser, fids = dumps_task((double, Point()), cache)
    assert calls.count(Point) == 2  # pickled afresh outside the batch
    table = FunctionTable()
    table.add_blobs({f: cache.blob(f) for f in fids})
    assert loads(ser, table)[1].scale == 5


# --- CallPickles: map payloads from constant pieces ---------------------------------------


@pytest.mark.parametrize("args", [
    (), (1,), (1, 2.5, "x", b"y", None, True), ("same", "same"), ("é" * 300,), (b"z" * 10_000,),
    (b"z" * 32_000,), ("é" * 16_000,), (-(10 ** 30), float("nan")),
])
@pytest.mark.parametrize("kwargs", [{}, {"a": 1, "b": "k", "c": "k"}])
def test_call_pickles_unpickle_to_the_call_dumps_task_makes(args: Any, kwargs: Any) -> None:
    from shoal.protocol._call import Call

    cache = FunctionCache()
    fid = cache.fid(double)
    fast = _serialize.CallPickles(fid, kwargs)(args)
    assert fast is not None
    table = FunctionTable()
    table.add_blobs({fid: cache.blobs[fid]})
    got = loads(fast, table)
    want = ship(Call(double, args, kwargs), cache)
    assert type(got) is Call and got.func is want.func is double
    assert repr(got.args) == repr(want.args) and got.kwargs == want.kwargs


def test_call_pickles_take_only_single_frame_pickles() -> None:
    import pickle

    # CallPickles cuts the one frame's body out without reading its header: the
    # arguments it takes must stay under the pickler's frame size.
    assert _serialize.PLAIN_BYTES < pickle._Framer._FRAME_SIZE_TARGET  # type: ignore[attr-defined]


def test_call_pickles_decline_arguments_that_are_not_plain() -> None:
    cache = FunctionCache()
    fast = _serialize.CallPickles(cache.fid(double), {})
    assert fast((np.arange(3),)) is None
    assert fast(([1, 2],)) is None  # containers take the general path (futures may hide in them)
    assert fast((b"x" * 100_000,)) is None  # big: the general path
    assert _serialize.CallPickles.of("fid", {"f": double}) is None
    assert _serialize.CallPickles.of("fid", {"big": "x" * 200_000}) is None  # many frames
    with pytest.raises(ValueError):
        _serialize.CallPickles("fid", {"f": [1]})


def test_a_plain_call_payload_names_its_hooks_briefly() -> None:
    # every held task keeps its payload on the scheduler: module paths in it cost per task
    from shoal.protocol._call import Call
    from shoal.protocol._serialize import FunctionCache, dumps_task

    def noop(x: int) -> int:
        return x

    payload, fids = dumps_task(Call(noop, (12345,), {}), FunctionCache())
    assert len(fids) == 1
    assert len(payload.frames[0]) < 90
    assert b"shoal.protocol" not in payload.frames[0]
    assert type(payload.frames) is tuple
    fast = _serialize.CallPickles.of(fids[0], {})
    assert fast is not None
    made = fast((12345,))
    assert made is not None and b"shoal.protocol" not in made.frames[0]
    assert len(made.frames[0]) <= len(payload.frames[0])
