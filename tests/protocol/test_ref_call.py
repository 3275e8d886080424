"""``RefCall``: a dask Task of literal and reference arguments, as the graph path sends it
(``_collections.ref_call``). It must run on the worker as the Task would."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from dask._task_spec import Alias, DataNode, List, Task, TaskRef, _identity_cast

from shoal.client._collections import _flat_call, ref_call
from shoal.protocol._call import RefCall, RefCallPickles
from shoal.protocol._serialize import FunctionCache, FunctionTable, Serialized, dumps_task, loads


def record(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
    return (args, kwargs)


def ship(payload: Any) -> Any:
    cache = FunctionCache()
    ser, fids = dumps_task(payload, cache)
    table = FunctionTable()
    table.add_blobs({fid: cache.blobs[fid] for fid in fids})
    return loads(Serialized([bytes(f) for f in ser.frames]), table)


VALUES = {"a": 10, "b": [20], ("t", 1): None}


@pytest.mark.parametrize(
    "task",
    [
        Task("k", record, TaskRef("a"), 2, TaskRef("b")),
        Task("k", record, None, TaskRef(("t", 1)), "text", None),
        Task("k", record, TaskRef("a"), TaskRef("a")),
        Task("k", record, 1, x=TaskRef("b"), y=None, z=3),
        Task("k", record),
        Task("k", record, (1, 2), {"plain": "dict"}),
    ],
    ids=["positional", "literal-none-and-tuple-key", "same-key-twice", "keywords", "no-args",
         "literal-containers"],
)
def test_a_refcall_runs_on_the_worker_as_its_task_would(task: Task) -> None:
    payload = ref_call(task)
    assert type(payload) is RefCall
    assert payload.dependencies == task.dependencies
    shipped = ship(payload)
    assert shipped(VALUES) == task(VALUES)
    assert shipped.dependencies == task.dependencies


def test_a_refcall_pickles_smaller_than_its_task() -> None:
    task = Task("add-abc", record, TaskRef("inc-1"), TaskRef("inc-2"))
    cache = FunctionCache()
    assert dumps_task(ref_call(task), cache)[0].nbytes < dumps_task(task, cache)[0].nbytes


@pytest.mark.parametrize(
    "node",
    [
        Task("k", record, List(TaskRef("a"), 1), 2),  # a list of references beside others
        Task("k", record, Task("inner", record, TaskRef("a"))),  # a fused, nested task
        Task("k", record, y=List(TaskRef("a"))),
        Task("k", record, 1, _data_producer=True),
        DataNode("k", 5),
        Alias("k", "a"),
    ],
    ids=["list-of-refs-and-more", "nested-task", "keyword-list", "data-producer", "data",
         "alias"],
)
def test_nodes_that_are_not_flat_calls_travel_as_they_are(node: Any) -> None:
    assert ref_call(node) is node
    assert ship(node)(VALUES) == node(VALUES)


# --- payloads put together from constant pieces (RefCallPickles) -------------------------------


def _loaded(ser: Serialized, cache: FunctionCache, fids: list[str]) -> Any:
    table = FunctionTable()
    table.add_blobs({fid: cache.blobs[fid] for fid in fids})
    return loads(Serialized([bytes(f) for f in ser.frames]), table)


@pytest.mark.parametrize(
    "task",
    [
        Task("k", record, TaskRef("a"), 2, TaskRef("b")),
        Task("k", record, None, TaskRef(("t", 1)), "text", 2.5, b"raw", True),
        Task("k", record, TaskRef("a"), TaskRef("a")),
        Task("k", record, 1, x=TaskRef("b"), y=None, z="z"),
        Task("k", record),
    ],
    ids=["positional", "plain-values-and-tuple-key", "same-key-twice", "keywords", "no-args"],
)
def test_pieced_payloads_load_as_the_refcall_dumps_task_would_make(task: Task) -> None:
    cache = FunctionCache()
    made = RefCallPickles(cache)(*_flat_call(task))
    assert made is not None
    ser, fids = made
    payload = _loaded(ser, cache, fids)
    assert type(payload) is RefCall
    assert payload(VALUES) == task(VALUES) == ship(ref_call(task))(VALUES)
    assert payload.dependencies == task.dependencies
    assert fids == dumps_task(ref_call(task), cache)[1]


@pytest.mark.parametrize(
    "task",
    [
        Task("k", record, (1, 2)),  # a container: may hold anything, the pickler decides
        Task("k", record, record),  # a function as an argument goes through the table
        Task("k", record, y=[1]),
        Task("k", abs, TaskRef("a")),  # a builtin, not a Python function
        Task("k", record, TaskRef(("t", (1, 2)))),  # a nested tuple key
        Task("k", record, "x" * 40_000),  # too big for one frame's worth
    ],
    ids=["tuple-arg", "function-arg", "list-kwarg", "builtin-func", "nested-key", "big"],
)
def test_calls_with_other_values_are_left_to_the_task_pickler(task: Task) -> None:
    assert RefCallPickles(FunctionCache())(*_flat_call(task)) is None
    values = {**VALUES, ("t", (1, 2)): 3}
    assert ship(ref_call(task))(values) == task(values)


def test_a_function_rebound_between_graphs_gets_its_new_fid() -> None:
    cache = FunctionCache()
    scale = [2]

    def times(x: int) -> int:
        return x * scale[0]

    first = RefCallPickles(cache)(times, (None,), {}, ((0, "a"),))
    assert first is not None

    def times(x: int) -> int:  # a new function: a new fid
        return x * scale[0] * 10

    second = RefCallPickles(cache)(times, (None,), {}, ((0, "a"),))
    assert second is not None
    assert first[1] != second[1]
    assert _loaded(*second[:1], cache, second[1])({"a": 1}) == 20


# --- payloads sharing their non-plain part (RefCallPickles.templated) --------------------------


class Counted:
    """A shared argument that counts how often it is pickled."""

    pickled = 0

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def __reduce__(self) -> Any:
        Counted.pickled += 1
        return Counted, (self.tag,)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Counted) and other.tag == self.tag

    def __hash__(self) -> int:
        return hash(self.tag)


def layer(shared: Any, options: dict[str, Any]) -> list[Task]:
    """Tasks of one "layer": the same function and shared objects, their own keys,
    indices, shapes and keyword values."""
    return [
        Task(("k", i), record, shared, TaskRef(("a", i)), i, (i, 1), DataNode(None, (1, i)),
             options, mode=f"m{i}", ref=TaskRef("b"))
        for i in range(5)
    ]


def test_templated_payloads_run_as_their_tasks_would() -> None:
    cache = FunctionCache()
    pickles = RefCallPickles(cache)
    shared, options = Counted("subgraph"), {"axis": (0,), "f": record}
    values = {**VALUES, **{("a", i): i * 10 for i in range(5)}}
    for task in layer(shared, options):
        flat = _flat_call(task)
        assert flat is not None
        assert pickles(*flat) is None  # not plain: the shared objects need the task pickler
        made = pickles.templated(*flat)
        assert made is not None
        payload = _loaded(made[0], cache, made[1])
        assert type(payload) is RefCall
        assert payload(values) == task(values)
        assert payload.dependencies == task.dependencies
        # record's fid (inside options), then the shared part's own entry
        assert made[1][:-1] == dumps_task(ref_call(task), cache)[1]
        assert made[1][-1] in cache.blobs


def test_the_shared_part_is_pickled_once_per_graph() -> None:
    cache = FunctionCache()
    pickles = RefCallPickles(cache)
    shared = Counted("once")
    Counted.pickled = 0
    tasks = layer(shared, {"x": 1}) + layer(shared, {"x": 1})  # two option dicts: two parts
    for task in tasks:
        assert pickles.templated(*_flat_call(task)) is not None
    assert Counted.pickled == 2


def test_past_the_cap_calls_are_pickled_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    from shoal.protocol import _call

    monkeypatch.setattr(_call, "_MAX_TEMPLATES", 2)
    pickles = RefCallPickles(FunctionCache())
    made = [pickles.templated(record, (Counted(str(i)),), {}, ()) for i in range(3)]
    assert made[0] is not None and made[1] is not None
    assert made[2] is None


def test_templated_calls_with_buffers_or_odd_keys_are_pickled_whole() -> None:
    pickles = RefCallPickles(FunctionCache())
    big = bytearray(b"x" * 200_000)  # out of band: more than one frame
    assert pickles.templated(record, (pickle_buffer(big),), {}, ()) is None
    assert pickles.templated(record, (Counted("k"), None), {}, ((1, ("t", (1, 2))),)) is None


def pickle_buffer(data: bytearray) -> Any:
    import pickle

    return pickle.PickleBuffer(data)


def test_a_data_node_argument_passes_its_value() -> None:
    task = Task("k", record, DataNode(None, [1, 2]), TaskRef("a"), z=DataNode(None, "v"))
    payload = ref_call(task)
    assert type(payload) is RefCall
    assert ship(payload)(VALUES) == task(VALUES)


@pytest.mark.parametrize(
    "task",
    [
        Task("k", record, Task(None, _identity_cast, Alias("a"), TaskRef("b"), 3, typ=list)),
        Task("k", record, Task(None, _identity_cast, Alias("x", "a"), Alias(("t", 1)), typ=tuple)),
        Task("k", record, List(TaskRef("a"), Alias("b"), "lit")),
    ],
    ids=["list-of-refs", "tuple-of-aliases", "List-node"],
)
def test_a_reduction_step_over_a_list_of_inputs_is_a_flat_call(task: Task) -> None:
    payload = ref_call(task)
    assert type(payload) is RefCall
    assert payload.dependencies == task.dependencies
    assert ship(payload)(VALUES) == task(VALUES)
    made = RefCallPickles(FunctionCache()).templated(*_flat_call(task))
    assert made is not None


@pytest.mark.parametrize(
    "task",
    [
        Task("k", record, Task(None, _identity_cast, Task(None, record, TaskRef("a")), typ=list)),
        Task("k", record, Task(None, _identity_cast, TaskRef("a"), typ=set)),
        Task("k", record, Task(None, record, TaskRef("a"))),
    ],
    ids=["nested-deeper", "set-container", "other-inner-function"],
)
def test_other_nested_calls_travel_as_tasks(task: Task) -> None:
    assert ref_call(task) is task


def test_the_shared_part_travels_once_in_the_function_table_not_in_each_payload() -> None:
    cache = FunctionCache()
    pickles = RefCallPickles(cache)
    small, big = [1, 2, 3], list(range(40_000))  # big: ~120 kB in one frame
    made = [pickles.templated(record, (shared, None), {}, ((1, ("a", i)),))
            for i, shared in enumerate((small, small, big, big))]
    assert all(m is not None for m in made)
    sizes = [m[0].nbytes for m in made]
    assert max(sizes) < 200, sizes  # the payload names its shared part, it does not carry it
    assert made[2][1] == made[3][1] != made[0][1]  # one table entry per shared part
    table = FunctionTable()  # one worker: each entry arrives once
    table.add_blobs({fid: cache.blob(fid) for m in made for fid in m[1]})
    loaded = [loads(Serialized([bytes(f) for f in m[0].frames]), table) for m in made]
    values = {("a", i): i for i in range(4)}
    assert [p(values) for p in loaded] == [((s, i), {}) for i, s in
                                           enumerate((small, small, big, big))]
    assert loaded[0].args[0] is loaded[1].args[0]  # unpickled once, shared by the calls
    assert loaded[2].args[0] is loaded[3].args[0]
    assert pickles.shared_bytes > len(pickle.dumps(big)) > pickles.shared_bytes // 2


def test_a_shared_part_stays_in_the_cache_while_its_pickler_lives() -> None:
    import gc

    cache = FunctionCache()
    pickles = RefCallPickles(cache)
    made = pickles.templated(record, (Counted("held"), None), {}, ((1, "a"),))
    assert made is not None
    part = made[1][-1]
    assert cache.blob(part)  # rows are queued (and their blobs looked up) meanwhile
    del pickles
    gc.collect()
    assert part not in cache.blobs  # a graph's shared parts are not kept past it
