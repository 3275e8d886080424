"""Issue 2, "What a user must be able to do": the futures API of a dask.distributed Client.

Each test states one behaviour a dask user relies on; they run on the shared 2-worker cluster.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import os
import threading
import time
import traceback

import numpy as np
import pytest

from shoal import Future, as_completed, futures_of, wait

from ._helpers import gated, scheduler_tasks, wait_for

pytestmark = pytest.mark.integration


def inc(x):
    return x + 1


def add(x, y):
    return x + y


def add_kw(x, y=0, z=0):
    return x + 100 * y + 10_000 * z


def repr_of(value, suffix=""):
    return repr(value) + suffix


def fail(message):
    raise ValueError(message)


def total(values):
    return sum(values)


def total_of_dict(mapping):
    return sum(mapping.values())


# --- submit and the Future object -------------------------------------------------------------


def test_functions_from_the_clients_modules_run_on_workers(client):
    """Functions of an importable module (this test module) are pickled by reference, as
    cloudpickle does; dask's spawned workers inherit the client's sys.path, so they load."""
    assert inc.__module__ != "__main__"
    assert client.submit(inc, 1, pure=False).result(timeout=10) == 2


def test_submit_returns_a_future_whose_result_is_the_value(client):
    fut = client.submit(inc, 1)
    assert isinstance(fut, Future)
    assert fut.result(timeout=10) == 2
    assert fut.done()
    assert fut.status == "finished"


def test_future_key_is_a_string_prefixed_with_the_function_name(client):
    fut = client.submit(inc, 10)
    assert isinstance(fut.key, str)
    assert fut.key.startswith("inc-")


def test_future_status_is_pending_until_the_task_finishes(client, gate):
    fut = client.submit(gated, gate.path, "done", pure=False)
    assert fut.status == "pending"
    assert not fut.done()
    gate.open()
    assert fut.result(timeout=10) == "done"
    assert fut.status == "finished"


def test_result_with_timeout_raises_timeout_error_while_running(client, gate):
    fut = client.submit(gated, gate.path, 7, pure=False)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        fut.result(timeout=0.2)
    assert time.monotonic() - start < 5
    gate.open()
    assert fut.result(timeout=10) == 7


def test_failed_future_exposes_exception_and_traceback(client):
    fut = client.submit(fail, "boom-in-task")
    wait([fut], timeout=10)
    assert fut.status == "error"
    assert fut.done()
    exc = fut.exception(timeout=10)
    assert isinstance(exc, ValueError)
    assert "boom-in-task" in str(exc)
    frames = traceback.extract_tb(fut.traceback(timeout=10))
    assert "fail" in [frame.name for frame in frames]
    with pytest.raises(ValueError, match="boom-in-task"):
        fut.result(timeout=10)


def test_cancel_marks_the_future_cancelled_and_forgets_the_task(client, gate):
    fut = client.submit(gated, gate.path, 1, pure=False)
    key = fut.key
    fut.cancel()
    wait_for(fut.cancelled, timeout=10)
    assert fut.status == "cancelled"
    with pytest.raises(concurrent.futures.CancelledError):
        fut.result(timeout=10)
    wait_for(lambda: key not in scheduler_tasks(client), timeout=10)


def test_add_done_callback_is_called_with_the_future(client, gate):
    called = threading.Event()
    received = []

    def on_done(future):
        received.append(future)
        called.set()

    fut = client.submit(gated, gate.path, 3, pure=False)
    fut.add_done_callback(on_done)
    assert not called.is_set()
    gate.open()
    assert called.wait(10)
    assert received == [fut]
    assert received[0].result(timeout=10) == 3


def test_add_done_callback_on_a_finished_future_still_fires(client):
    fut = client.submit(inc, 41, pure=False)
    fut.result(timeout=10)
    called = threading.Event()
    fut.add_done_callback(lambda f: called.set())
    assert called.wait(10)


# --- map and gather ---------------------------------------------------------------------------


def test_map_of_ten_thousand_tasks_returns_every_result_in_order(client):
    futs = client.map(inc, range(10_000))
    assert len(futs) == 10_000
    assert len({f.key for f in futs}) == 10_000
    assert client.gather(futs) == list(range(1, 10_001))


def test_map_over_repeated_arguments_runs_each_key_once_and_gives_every_result(client):
    futs = client.map(inc, [1, 1, 2, 1])
    assert futs[0].key == futs[1].key == futs[3].key != futs[2].key
    assert client.gather(futs) == [2, 2, 3, 2]


def test_map_over_several_iterables_zips_them(client):
    futs = client.map(add, range(5), range(10, 15))
    assert client.gather(futs) == [10, 12, 14, 16, 18]


def test_map_over_a_dict_maps_over_its_keys_as_iteration_does(client):
    # dask iterates a dict as Python does (its keys); shoal refused it with TypeError
    futs = client.map(add, {1: "a", 3: "b"}, [10, 20])
    assert client.gather(futs) == [11, 23]


def test_map_passes_keyword_arguments_to_every_call(client):
    futs = client.map(add_kw, range(3), y=1, z=2)
    assert client.gather(futs) == [20_100, 20_101, 20_102]


def test_map_over_mixed_arguments_runs_each_call_with_its_own(client):
    """Plain values, containers, arrays and futures in one map (plain ones take the
    client's fast payload path, the others the general one)."""
    (x,) = client.map(inc, [41])
    args = [1, "ab", None, 2.5, b"by", [1, 2], np.arange(3), x, ("t", 1), True]
    futs = client.map(repr_of, args, suffix="!")
    want = [repr(a) + "!" for a in args[:7]] + ["42!", "('t', 1)!", "True!"]
    assert client.gather(futs) == want
    big = "s" * 200_000  # keyword arguments too big for the fast payloads: the general path
    assert client.gather(client.map(repr_of, [1, 2], suffix=big)) == ["1" + big, "2" + big]


def test_map_gives_the_same_pure_keys_as_before_and_again(client):
    from dask.base import tokenize

    from shoal.client._submit import Submitting

    futs = client.map(add, [1, "a", 2.5], [None, b"x", True])
    ftoken = tokenize(Submitting._function_token(client, add), {})
    assert [f.key for f in futs] == [
        f"add-{tokenize(ftoken, *args)}" for args in [(1, None), ("a", b"x"), (2.5, True)]]
    assert [f.key for f in client.map(add, [1, "a", 2.5], [None, b"x", True])] == [
        f.key for f in futs]


def test_gather_accepts_list_dict_and_nested_structures(client):
    a, b, c = client.map(inc, [1, 2, 3])
    assert client.gather([a, b, c]) == [2, 3, 4]
    assert client.gather({"x": a, "y": b}) == {"x": 2, "y": 3}
    assert client.gather({"x": [a, (b, c)], "y": {"z": c}}) == {"x": [2, (3, 4)], "y": {"z": 4}}
    assert client.gather(a) == 2


def test_gather_raises_a_failure_without_waiting_for_the_futures_still_running(client, gate):
    # As dask's (it stops waiting at the first failure): a failed input, or a cancelled
    # one, is raised while the others still run, whatever its place. shoal waited for
    # every future first, so one long task held the error back for its whole run.
    running = client.submit(gated, gate.path, 1, pure=False)
    failed = client.submit(fail, "early")
    wait(failed, timeout=30)
    cancelled = client.submit(gated, gate.path, 2, pure=False)
    client.cancel(cancelled)
    outcome: dict[str, object] = {}
    calls = {
        "after": lambda: client.gather([running, failed]),
        "before": lambda: client.gather({"x": [failed], "y": running}),
        "cancelled": lambda: client.gather([running, cancelled]),
        "async": lambda: client.sync(client._gather, [running, failed]),
    }

    def call(name, fn):
        try:
            outcome[name] = fn()
        except BaseException as exc:
            outcome[name] = exc

    threads = [threading.Thread(target=call, args=item) for item in calls.items()]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    waited = [t for t in threads if t.is_alive()]
    gate.open()
    assert not waited, outcome
    for name in ("after", "before", "async"):
        assert isinstance(outcome[name], ValueError) and "early" in str(outcome[name]), outcome
    assert isinstance(outcome["cancelled"], concurrent.futures.CancelledError), outcome
    assert running.result(timeout=30) == 1


# --- dependencies -----------------------------------------------------------------------------


def test_futures_passed_as_arguments_become_dependencies(client):
    futs = client.map(inc, range(3))
    assert client.submit(add, futs[0], futs[1]).result(timeout=10) == 3
    assert client.submit(add, futs[2], y=futs[1]).result(timeout=10) == 5


def test_futures_nested_inside_containers_are_resolved(client):
    futs = client.map(inc, range(4))
    assert client.submit(total, futs).result(timeout=10) == 10
    assert client.submit(total_of_dict, {"a": futs[0], "b": futs[3]}).result(timeout=10) == 5


def test_a_long_chain_of_dependent_futures(client):
    fut = client.submit(inc, 0, pure=False)
    for _ in range(200):
        fut = client.submit(inc, fut)
    assert fut.result(timeout=30) == 201


# --- scatter ----------------------------------------------------------------------------------


def test_scatter_list_returns_futures_usable_by_tasks(client):
    array = np.arange(100_000, dtype="int64")
    futs = client.scatter([array, 5])
    assert all(isinstance(f, Future) for f in futs)
    assert client.submit(np.sum, futs[0]).result(timeout=10) == array.sum()
    assert client.gather(futs[1]) == 5
    np.testing.assert_array_equal(client.gather(futs[0]), array)


def test_scatter_dict_keeps_the_keys(client):
    futs = client.scatter({"scatter-dict-a": 1, "scatter-dict-b": 2})
    assert set(futs) == {"scatter-dict-a", "scatter-dict-b"}
    assert futs["scatter-dict-a"].key == "scatter-dict-a"
    assert client.gather(futs) == {"scatter-dict-a": 1, "scatter-dict-b": 2}


def test_scatter_broadcast_puts_a_copy_on_every_worker(client):
    fut = client.scatter(np.arange(10), broadcast=True)
    workers = set(client.run(os.getpid))
    assert len(workers) == 2
    wait_for(lambda: set(client.who_has([fut])[fut.key]) == workers, timeout=10)
    assert client.submit(np.sum, fut).result(timeout=10) == 45


# --- wait -------------------------------------------------------------------------------------


def test_wait_all_completed_returns_done_and_not_done(client):
    futs = client.map(inc, range(20))
    result = wait(futs, timeout=10)
    assert result.done == set(futs)
    assert result.not_done == set()
    done, not_done = result
    assert done == set(futs) and not not_done


def test_wait_first_completed_returns_as_soon_as_one_is_done(client, gate):
    slow = client.submit(gated, gate.path, 0, pure=False)
    fast = client.submit(inc, 1, pure=False)
    result = wait([slow, fast], return_when="FIRST_COMPLETED", timeout=10)
    assert fast in result.done
    assert slow in result.not_done


def test_wait_with_timeout_raises_timeout_error(client, gate):
    slow = client.submit(gated, gate.path, 0, pure=False)
    with pytest.raises(TimeoutError):
        wait([slow], timeout=0.2)


# --- as_completed -----------------------------------------------------------------------------


def test_as_completed_yields_each_future_once(client):
    futs = client.map(inc, range(30))
    seen = list(as_completed(futs))
    assert len(seen) == 30
    assert set(seen) == set(futs)


def test_as_completed_yields_a_repeated_future_once_per_time_it_was_given(client):
    # dask counts: a map over repeated inputs (same pure keys) yields one future per input,
    # so a loop collecting results gets as many as it submitted.
    futs = client.map(inc, [1, 1, 2, 1])
    assert sorted(f.result() for f in as_completed(futs)) == [2, 2, 2, 3]
    assert len(list(as_completed(futs, with_results=True))) == 4
    assert sum(len(batch) for batch in as_completed(futs).batches()) == 4
    again = as_completed([futs[3]])
    again.add(futs[3])
    assert again.count() == 2 and len(list(again)) == 2


def test_as_completed_yields_in_completion_order(client, gate):
    slow = client.submit(gated, gate.path, "slow", pure=False)
    fast = client.map(inc, range(3), pure=False)
    order = []
    for fut in as_completed([slow, *fast]):
        order.append(fut)
        if len(order) == 3:
            gate.open()
    assert order[-1] is slow
    assert set(order[:3]) == set(fast)


def test_as_completed_add_during_iteration_like_the_seed(client):
    iterator = as_completed(client.map(inc, range(5)))
    submitted = 5
    results = []
    for fut in iterator:
        results.append(fut.result())
        if submitted < 15:
            iterator.add(client.submit(inc, 100 + submitted))
            submitted += 1
    assert len(results) == 15
    assert sorted(results) == [1, 2, 3, 4, 5, *range(106, 116)]


def test_as_completed_update_adds_several_futures(client):
    iterator = as_completed([client.submit(inc, 1000)])
    iterator.update(client.map(inc, [2000, 3000]))
    assert sorted(f.result() for f in iterator) == [1001, 2001, 3001]
    assert iterator.is_empty()


def test_as_completed_with_results_yields_pairs(client):
    futs = client.map(inc, range(5))
    pairs = list(as_completed(futs, with_results=True))
    assert {f.key for f, _ in pairs} == {f.key for f in futs}
    assert all(f.result() == value for f, value in pairs)


def test_as_completed_batches_yields_lists_covering_all_futures(client):
    futs = client.map(inc, range(50))
    batches = list(as_completed(futs).batches())
    assert all(isinstance(batch, list) and batch for batch in batches)
    flat = [f for batch in batches for f in batch]
    assert len(flat) == 50
    assert set(flat) == set(futs)


# --- keys: pure, pure=False, key= ---------------------------------------------------------------


def test_pure_submit_of_the_same_call_gives_the_same_key(client):
    assert client.submit(inc, 5).key == client.submit(inc, 5).key
    assert client.submit(inc, 5, pure=True).key == client.submit(inc, 5).key
    assert client.submit(inc, 5).key != client.submit(inc, 6).key


def test_impure_submit_gives_distinct_keys(client):
    a = client.submit(inc, 5, pure=False)
    b = client.submit(inc, 5, pure=False)
    assert a.key != b.key
    assert a.result(timeout=10) == b.result(timeout=10) == 6


def test_explicit_key_is_used(client):
    fut = client.submit(inc, 1, key="integration-explicit-key")
    assert fut.key == "integration-explicit-key"
    assert fut.result(timeout=10) == 2
    assert "integration-explicit-key" in scheduler_tasks(client)


# --- futures_of, refcounting, scheduler state ---------------------------------------------------


@pytest.mark.parametrize("call", ["submit", "map"])
def test_bad_options_are_rejected_before_anything_is_sent(client, call):
    run = (lambda **kw: client.submit(abs, -1, **kw)) if call == "submit" else (
        lambda **kw: client.map(abs, [-1], **kw))
    with pytest.raises(TypeError, match=r"priority must be a number.*'hi'"):
        run(priority="hi")
    with pytest.raises(ValueError, match="retries must be a non-negative integer"):
        run(retries=-1)
    with pytest.raises(TypeError, match="needs a callable"):
        getattr(client, call)(5, [1])
    assert (run(priority=2.5, pure=False).result() if call == "submit"
            else client.gather(run(priority=2.5, pure=False))) in (1, [1])


def test_futures_of_finds_futures_in_nested_structures(client):
    a, b = client.map(inc, [1, 2])
    found = futures_of([a, {"x": (b,)}, 3])
    assert {f.key for f in found} == {a.key, b.key}


def test_deleting_the_last_future_releases_the_key_on_the_scheduler(client):
    fut = client.submit(inc, 41, pure=False)
    key = fut.key
    assert fut.result(timeout=10) == 42
    assert key in scheduler_tasks(client)
    del fut
    wait_for(lambda: key not in scheduler_tasks(client), timeout=10)


def test_a_key_stays_while_another_future_holds_it(client):
    first = client.submit(inc, 424242)
    second = client.submit(inc, 424242)
    key = first.key
    assert second.key == key
    assert first.result(timeout=10) == 424243
    del first
    # a full round trip through the scheduler after the release message
    assert client.submit(inc, 0, pure=False).result(timeout=10) == 1
    assert key in scheduler_tasks(client)
    assert second.result(timeout=10) == 424243
    del second
    wait_for(lambda: key not in scheduler_tasks(client), timeout=10)


def test_sequential_round_trips_wake_the_loop_once_each(make_client, monkeypatch):
    """A future dropped in a user thread is released after a short delay, in a batch with
    the others dropped meanwhile, not by a loop wake-up of its own: one after another,
    ``submit(...).result()`` wakes shoal's loop once per call, and every dropped key is
    still released."""
    from shoal import _loop
    from shoal.client import _outbox

    monkeypatch.setattr(_outbox, "RELEASE_DELAY", 0.05)
    client = make_client(n_workers=1)  # its own: the long delay must not outlive the test
    assert client.submit(inc, 0, pure=False).result(timeout=60) == 1  # arms the release delay
    user = threading.get_ident()
    wakes = []
    real = _loop.call_soon

    def counting(fn, *args):
        if threading.get_ident() == user:
            wakes.append(fn)
        return real(fn, *args)

    monkeypatch.setattr(_loop, "call_soon", counting)
    keys = []
    for i in range(20):
        fut = client.submit(inc, i, pure=False)
        keys.append(fut.key)
        assert fut.result(timeout=60) == i + 1
        del fut
    assert len(wakes) <= 20 + 1, f"{len(wakes)} loop wake-ups for 20 round trips"
    wait_for(lambda: not set(keys) & set(scheduler_tasks(client)), timeout=60)


def test_scheduler_tasks_show_processing_then_memory(client, gate):
    fut = client.submit(gated, gate.path, 1, pure=False)

    def state():
        ts = scheduler_tasks(client).get(fut.key)
        return ts and ts.state

    wait_for(lambda: state() == "processing", timeout=10)
    assert scheduler_tasks(client)[fut.key].exception is None
    gate.open()
    fut.result(timeout=10)
    wait_for(lambda: state() == "memory", timeout=10)
    assert (fut.key, "memory") in [(k, v.state) for k, v in scheduler_tasks(client).items()]


def test_who_has_and_has_what_list_every_key_by_default(client):
    fut = client.submit(inc, 41, pure=False)
    assert fut.result(timeout=10) == 42
    everywhere = client.who_has()
    assert fut.key in everywhere and len(everywhere[fut.key]) == 1
    [holder] = everywhere[fut.key]
    assert fut.key in client.has_what()[holder]
    assert client.who_has([fut]) == {fut.key: (holder,)}


def test_waits_take_a_timeout_given_as_a_duration_string_as_dask(client, gate):
    # dask parses these timeouts (parse_timedelta): "1s", "200ms"; shoal's result()
    # failed with an unrelated TypeError comparing a float and a str.
    f = client.submit(inc, 1)
    assert f.result(timeout="10s") == 2
    assert f.result(timeout=datetime.timedelta(seconds=10)) == 2
    assert f.exception(timeout="10s") is None
    assert wait([f], timeout="10s").done == {f}
    assert [x.result() for x in as_completed([f], timeout="10s")] == [2]
    running = client.submit(gated, gate.path, 0, pure=False)
    with pytest.raises(TimeoutError):
        running.result(timeout="50ms")
    with pytest.raises(ValueError, match="duration"):
        f.result(timeout="soon")
