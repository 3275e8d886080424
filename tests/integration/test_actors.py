"""Actors (issue 10): stateful objects on one worker, driven through an Actor proxy, with
dask.distributed's names and semantics."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import traceback
from typing import Any

import pytest

from shoal import Actor, ActorFuture, BaseActorFuture, Client

from ._helpers import Gate, gated, scheduler_tasks, wait_for

pytestmark = pytest.mark.integration


class Counter:
    n = 0

    def __init__(self, start: int = 0) -> None:
        self.n = start

    def increment(self, by: int = 1) -> int:
        self.n += by
        return self.n

    @property
    def doubled(self) -> int:
        return 2 * self.n

    def fail(self) -> None:
        raise ValueError(f"counter at {self.n} refuses")

    def thread(self) -> str:
        return threading.current_thread().name

    def wait_for_gate(self, path: str) -> str:
        gated(path, None)
        return "opened"

    def mark_and_wait(self, started: str, path: str) -> str:
        open(started, "w").close()
        return self.wait_for_gate(path)

    async def aincrement(self) -> int:
        await asyncio.sleep(0)
        self.n += 1
        return self.n


class Relay:
    """An actor that calls another actor."""

    def __init__(self, target: Actor) -> None:
        self.target = target

    def forward(self) -> int:
        return self.target.increment().result(timeout=10) + 1000


def use_actor(counter: Actor, times: int = 1) -> int:
    value = 0
    for _ in range(times):
        value = counter.increment().result(timeout=10)
    return value


def call_and_wait(counter: Actor, started: str, gate: str) -> str:
    return counter.mark_and_wait(started, gate).result(timeout=60)


def read_attribute(counter: Actor) -> int:
    return counter.n


def echo_kwargs(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return kwargs


def holder_of(client: Client, fut: Any) -> str:
    (holders,) = client.who_has(fut).values()
    assert len(holders) == 1
    return holders[0]


# --- creating and calling -------------------------------------------------------------------


def test_submit_with_actor_true_returns_a_proxy_held_by_one_worker(client: Client) -> None:
    fut = client.submit(Counter, 5, actor=True)
    counter = fut.result(timeout=10)
    assert isinstance(counter, Actor)
    assert counter.key == fut.key
    assert repr(counter) == f"<Actor: Counter, key={fut.key}>"
    assert holder_of(client, fut) in client.scheduler_info()["workers"]
    assert counter.n == 5


def test_actor_and_actors_keywords_are_not_passed_to_the_function(client: Client) -> None:
    assert client.submit(echo_kwargs, actor=False, x=1).result(timeout=10) == {"x": 1}
    assert client.submit(echo_kwargs, actors=False).result(timeout=10) == {}
    mapped = client.map(echo_kwargs, [1, 2], actor=False, actors=False, y=2)
    assert client.gather(mapped) == [{"y": 2}, {"y": 2}]


def test_actors_is_an_alias_of_actor(client: Client) -> None:
    counter = client.submit(Counter, actors=True).result(timeout=10)
    assert isinstance(counter, Actor)
    assert counter.increment().result(timeout=10) == 1


def test_actor_submissions_are_never_shared_like_pure_tasks(client: Client) -> None:
    a = client.submit(Counter, actor=True)
    b = client.submit(Counter, actor=True)
    assert a.key != b.key
    ca, cb = a.result(timeout=10), b.result(timeout=10)
    ca.increment().result(timeout=10)
    assert (ca.n, cb.n) == (1, 0)


def test_method_calls_return_actor_futures_and_state_is_kept(client: Client) -> None:
    counter = client.submit(Counter, actor=True).result(timeout=10)
    first = counter.increment()
    assert isinstance(first, ActorFuture) and isinstance(first, BaseActorFuture)
    assert first.result(timeout=10) == 1
    assert first.done()
    assert counter.increment(by=10).result(timeout=10) == 11
    assert counter.increment().result(timeout=10) == 12
    assert counter.n == 12


def test_calls_run_in_the_order_they_were_made(client: Client) -> None:
    counter = client.submit(Counter, actor=True).result(timeout=10)
    futures = [counter.increment() for _ in range(100)]
    assert [f.result(timeout=10) for f in futures] == list(range(1, 101))
    assert counter.n == 100  # an attribute read comes after the calls made before it


def test_attribute_reads_return_values_and_properties(client: Client) -> None:
    counter = client.submit(Counter, 21, actor=True).result(timeout=10)
    assert counter.n == 21
    assert counter.doubled == 42
    assert "increment" in dir(counter)


def test_map_with_actor_true_makes_one_actor_per_element(client: Client) -> None:
    futures = client.map(Counter, [1, 2, 3], actor=True)
    counters = client.gather(futures)
    assert all(isinstance(c, Actor) for c in counters)
    assert [c.increment().result(timeout=10) for c in counters] == [2, 3, 4]


def test_actors_are_spread_over_the_workers(make_client: Any) -> None:
    client = make_client(n_workers=2)  # no actors left over from other tests
    futures = client.map(Counter, range(6), actor=True)
    client.gather(futures)
    holders = [holder_of(client, f) for f in futures]
    assert sorted(holders.count(w) for w in set(holders)) == [3, 3]


def test_a_method_exception_comes_back_with_its_type_and_remote_traceback(
    client: Client,
) -> None:
    counter = client.submit(Counter, 3, actor=True).result(timeout=10)
    call = counter.fail()
    with pytest.raises(ValueError, match="counter at 3 refuses") as info:
        call.result(timeout=10)
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "fail" in frames
    # the actor survives its method's exception
    assert counter.increment().result(timeout=10) == 4


def test_a_missing_attribute_raises_attribute_error_from_the_worker(client: Client) -> None:
    counter = client.submit(Counter, actor=True).result(timeout=10)
    with pytest.raises(AttributeError, match="no_such_thing"):
        counter.no_such_thing  # noqa: B018


def test_result_with_a_timeout_raises_timeout_error(client: Client, gate: Gate) -> None:
    counter = client.submit(Counter, actor=True).result(timeout=10)
    call = counter.wait_for_gate(gate.path)
    with pytest.raises(TimeoutError, match="wait_for_gate"):
        call.result(timeout=0.05)
    assert not call.done()
    gate.open()
    assert call.result(timeout=10) == "opened"


def test_as_completed_takes_actor_futures(client: Client) -> None:
    from shoal import as_completed

    counter = client.submit(Counter, actor=True).result(timeout=10)
    calls = [counter.increment() for _ in range(5)]
    seen = sorted(value for _, value in as_completed(calls, with_results=True, timeout=10))
    assert seen == [1, 2, 3, 4, 5]
    failing = as_completed([counter.fail()], with_results=True, raise_errors=False, timeout=10)
    ((_, (kind, exc, _tb)),) = list(failing)
    assert kind is ValueError and "refuses" in str(exc)


def test_actor_futures_are_awaitable(client: Client) -> None:
    counter = client.submit(Counter, actor=True).result(timeout=10)

    async def main() -> list[int]:
        return [await counter.increment(), await counter.aincrement()]

    assert asyncio.run(main()) == [1, 2]


def test_async_methods_run_on_the_workers_event_loop(client: Client) -> None:
    counter = client.submit(Counter, actor=True).result(timeout=10)
    assert counter.aincrement().result(timeout=10) == 1
    assert counter.increment().result(timeout=10) == 2


# --- where methods run ------------------------------------------------------------------------


def test_methods_run_on_the_workers_actor_thread(client: Client) -> None:
    a = client.submit(Counter, actor=True).result(timeout=10)
    b = client.submit(Counter, actor=True).result(timeout=10)
    assert a.thread().result(timeout=10) == "shoal-actor"
    assert b.thread().result(timeout=10) == "shoal-actor"


def test_a_running_method_does_not_take_a_task_thread(client: Client, gate: Gate) -> None:
    fut = client.submit(Counter, actor=True)
    counter = fut.result(timeout=10)
    holder = holder_of(client, fut)
    blocked = counter.wait_for_gate(gate.path)
    # the workers have one task thread each: a task on the holder still runs
    assert client.submit(echo_kwargs, z=1, workers=[holder], pure=False).result(timeout=10) == {"z": 1}
    assert not blocked.done()
    gate.open()
    assert blocked.result(timeout=10) == "opened"


# --- calls from tasks ------------------------------------------------------------------------


def test_an_actor_passed_to_a_task_is_a_working_proxy_on_any_worker(client: Client) -> None:
    fut = client.submit(Counter, actor=True)
    counter = fut.result(timeout=10)
    holder = holder_of(client, fut)
    other = next(w for w in client.scheduler_info()["workers"] if w != holder)
    here = client.submit(use_actor, counter, 3, workers=[holder], pure=False)
    there = client.submit(use_actor, counter, 3, workers=[other], pure=False)
    assert sorted([here.result(timeout=20), there.result(timeout=20)])[-1] == 6
    assert client.submit(read_attribute, counter, workers=[other], pure=False).result(timeout=10) == 6
    assert counter.n == 6


def test_the_actors_future_passed_to_a_task_arrives_as_the_proxy(client: Client) -> None:
    fut = client.submit(Counter, actor=True)
    assert client.submit(use_actor, fut, 2, pure=False).result(timeout=20) == 2


def test_many_tasks_calling_one_actor_lose_no_update(client: Client) -> None:
    counter = client.submit(Counter, actor=True).result(timeout=10)
    futures = client.map(use_actor, [counter] * 8, [25] * 8, pure=False)
    client.gather(futures)
    assert counter.n == 200


def test_an_actor_method_can_call_an_actor_on_the_same_worker(client: Client) -> None:
    target_fut = client.submit(Counter, actor=True)
    target = target_fut.result(timeout=10)
    holder = holder_of(client, target_fut)
    relay = client.submit(Relay, target, actor=True, workers=[holder]).result(timeout=10)
    assert relay.forward().result(timeout=10) == 1001
    assert target.n == 1


def test_an_actor_method_can_call_an_actor_on_another_worker(client: Client) -> None:
    target_fut = client.submit(Counter, actor=True)
    target = target_fut.result(timeout=10)
    holder = holder_of(client, target_fut)
    other = next(w for w in client.scheduler_info()["workers"] if w != holder)
    relay = client.submit(Relay, target, actor=True, workers=[other]).result(timeout=10)
    assert relay.forward().result(timeout=10) == 1001


# --- lifetime ------------------------------------------------------------------------------------


def test_the_proxy_alone_keeps_the_actor_alive(client: Client) -> None:
    fut = client.submit(Counter, actor=True)
    key = fut.key
    counter = fut.result(timeout=10)
    del fut
    counter.increment().result(timeout=10)
    assert key in scheduler_tasks(client)
    assert counter.increment().result(timeout=10) == 2
    del counter
    wait_for(lambda: key not in scheduler_tasks(client), timeout=10)


def test_a_call_to_a_released_actor_says_it_was_released(client: Client) -> None:
    import pickle

    fut = client.submit(Counter, actor=True)
    key = fut.key
    counter = fut.result(timeout=10)
    copy = pickle.dumps(counter)
    del fut, counter
    wait_for(lambda: key not in scheduler_tasks(client), timeout=10)
    stale = pickle.loads(copy)  # no Client holds the key: an unbound proxy
    assert stale.client is None

    def refused() -> bool:
        try:
            stale.increment().result(timeout=10)
        except RuntimeError as exc:
            assert "released" in str(exc) and repr(key) in str(exc)
            return True
        return False  # the worker had not yet been told to drop it

    wait_for(refused, timeout=10)


def test_compute_with_actors_true_makes_the_result_an_actor(client: Client) -> None:
    from dask import delayed

    counter = client.compute(delayed(Counter)(7), actors=True).result(timeout=10)
    assert isinstance(counter, Actor)
    assert counter.increment().result(timeout=10) == 8


def test_compute_with_actors_naming_a_non_task_is_a_type_error(client: Client) -> None:
    from dask import delayed

    with pytest.raises(TypeError, match="not a function call"):
        client.compute(delayed(Counter)(), actors=["no-such-key"])


def test_bad_actor_option_is_a_type_error(client: Client) -> None:
    with pytest.raises(TypeError, match="actor= takes True or False"):
        client.submit(Counter, actor="yes")


# --- losing the worker -----------------------------------------------------------------------------


def test_losing_the_actors_worker_fails_pending_and_later_calls(
    make_client: Any, tmp_path: Any
) -> None:
    client = make_client(n_workers=2)
    fut = client.submit(Counter, actor=True)
    counter = fut.result(timeout=60)
    holder = holder_of(client, fut)
    counter.increment().result(timeout=60)
    pid = client.run(os.getpid, workers=[holder])[holder]
    pending = counter.wait_for_gate(str(tmp_path / "never-opened"))
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(RuntimeError, match="Worker holding Actor was lost") as info:
        pending.result(timeout=120)
    assert repr(fut.key) in str(info.value) and holder in str(info.value)
    wait_for(lambda: fut.status == "error", timeout=120)
    with pytest.raises(RuntimeError, match="Worker holding Actor was lost") as later:
        counter.increment()
    assert holder in str(later.value) and str(fut.key) in str(later.value)
    with pytest.raises(RuntimeError, match="Worker holding Actor was lost"):
        fut.result(timeout=60)
    with pytest.raises(RuntimeError, match="Worker holding Actor was lost"):
        counter.n  # noqa: B018


def test_a_task_waiting_on_an_actor_whose_worker_dies_gets_a_clear_error(
    make_client: Any, tmp_path: Any
) -> None:
    client = make_client(n_workers=2)
    fut = client.submit(Counter, actor=True)
    counter = fut.result(timeout=60)
    holder = holder_of(client, fut)
    other = next(w for w in client.scheduler_info()["workers"] if w != holder)
    started, gate = str(tmp_path / "started"), str(tmp_path / "never-opened")
    task = client.submit(call_and_wait, counter, started, gate, workers=[other], pure=False)
    wait_for(lambda: os.path.exists(started), timeout=20)
    pid = client.run(os.getpid, workers=[holder])[holder]
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(RuntimeError, match="Worker holding Actor was lost") as info:
        task.result(timeout=120)
    assert holder in str(info.value)
