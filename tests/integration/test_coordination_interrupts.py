"""A Ctrl-C that interrupts a blocking Lock.acquire, Semaphore.acquire, Queue.get or
Event.wait leaves nothing behind: the request is withdrawn from the scheduler (no waiter
left to take a lock or an item later), and a lease or an item granted just as the
interrupt came is given back.

The interrupt is raised where the user's Ctrl-C lands: in the wait
(``shoal._interrupts.blocking_wait``), after what the test wants to race it has been set off.
One in-process cluster for the module (no worker: the primitives live on the scheduler);
each test uses a blocking client in process (its requests may be applied directly) and
one over TCP.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import shoal._interrupts
from shoal import Client, Event, Lock, Queue, Semaphore

from ._helpers import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster_client() -> Iterator[Client]:
    with Client(processes=False, n_workers=0, dashboard_address=None) as c:
        yield c


@pytest.fixture(params=["inproc", "tcp"])
def client(request: Any, cluster_client: Client) -> Iterator[Client]:
    target = cluster_client.cluster if request.param == "inproc" else cluster_client.scheduler_address
    with Client(target, set_as_default=False) as c:
        yield c


@pytest.fixture
def state(cluster_client: Client) -> Any:
    return cluster_client.cluster.scheduler.coordination.state


@pytest.fixture
def interrupt(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``interrupt(ready, then)``: the next blocking wait waits until ``ready()`` holds,
    calls ``then()`` (which races the interrupt), and raises KeyboardInterrupt."""

    def arm(ready: Callable[[], object], then: Callable[[], Any] = lambda: None) -> None:
        real = shoal._interrupts.blocking_wait

        def wait(done: Any, timeout: float | None) -> bool:
            monkeypatch.setattr(shoal._interrupts, "blocking_wait", real)
            wait_for(ready, timeout=10)
            then()
            raise KeyboardInterrupt

        monkeypatch.setattr(shoal._interrupts, "blocking_wait", wait)

    return arm


def name(base: str) -> str:
    return f"{base}-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("granted", [False, True], ids=["waiting", "granted-just-then"])
@pytest.mark.parametrize("kind", [Lock, Semaphore])
def test_an_interrupted_acquire_leaves_no_waiter_and_holds_no_lease(
        client, state, interrupt, kind, granted):
    lock_name = name("interrupted-acquire")
    holder = kind(name=lock_name, client=client)
    assert holder.acquire()
    waiter = kind(name=lock_name, client=client)
    interrupt(lambda: state.semaphores.semaphores[lock_name].waiters,
              holder.release if granted else lambda: None)
    with pytest.raises(KeyboardInterrupt):
        waiter.acquire()
    if not granted:
        wait_for(lambda: not state.semaphores.semaphores[lock_name].waiters, timeout=10)
        holder.release()
    wait_for(lambda: lock_name not in state.semaphores.semaphores, timeout=10)
    assert not waiter._leases
    assert kind(name=lock_name, client=client).acquire(timeout=5)


@pytest.mark.parametrize("item_came", [False, True], ids=["waiting", "item-just-then"])
def test_an_interrupted_get_leaves_no_getter_and_eats_no_item(client, state, interrupt, item_came):
    queue_name = name("interrupted-get")
    q = Queue(queue_name, client=client)
    other = Queue(queue_name, client=client)
    interrupt(lambda: state.queues.queues[queue_name].getters,
              (lambda: other.put("raced")) if item_came else lambda: None)
    with pytest.raises(KeyboardInterrupt):
        q.get()
    wait_for(lambda: not state.queues.queues[queue_name].getters, timeout=10)
    if not item_came:
        other.put("later")
    assert other.get(timeout=5) == ("raced" if item_came else "later")
    assert other.qsize() == 0


def test_an_interrupted_event_wait_leaves_no_waiter(client, state, interrupt):
    event_name = name("interrupted-wait")
    event = Event(event_name, client=client)
    interrupt(lambda: state.flags.waiters)
    with pytest.raises(KeyboardInterrupt):
        event.wait()
    wait_for(lambda: not state.flags.waiters, timeout=10)
    assert event.wait(timeout=0) is False
