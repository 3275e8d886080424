"""shoal across separate network hosts (Linux network namespaces, see ``_netns.py``): a
scheduler host, two worker hosts and a client host, each with its own network stack."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from _waiting import wait_for

from ._netns import Network, Process

CONNECT = """
from shoal import Client
import _tasks
client = Client({address!r}, timeout=30)
client.wait_for_workers({n}, timeout=60)
sorted(client.scheduler_info()["workers"])
"""


@dataclass(frozen=True)
class Join:
    """How workers and clients find the scheduler: what the scheduler is told, what each
    ``shoal worker`` is given, and the arguments of the client's ``Client(...)``."""

    scheduler_flags: Callable[[Network], list[str]]
    worker_args: Callable[[Network, str], list[str]]
    client_args: Callable[[Network, str], str]


def _scheduler_file(net: Network) -> str:
    return str(net.shared / "scheduler.json")  # the shared directory every host sees


JOINS = {
    "address": Join(lambda net: [], lambda net, address: [address],
                    lambda net, address: repr(address)),
    "scheduler-file": Join(lambda net: ["--scheduler-file", _scheduler_file(net)],
                           lambda net, address: ["--scheduler-file", _scheduler_file(net)],
                           lambda net, address: f"scheduler_file={_scheduler_file(net)!r}"),
}


def _host_of(address: str) -> str:
    return address.split("://", 1)[1].rsplit(":", 1)[0]


@pytest.mark.parametrize("how", sorted(JOINS))
def test_a_client_on_a_third_host_computes_a_graph_on_workers_of_two_others(
    how: str, net: Network, start_scheduler: Callable[..., tuple[Process, str]],
    start_worker: Callable[..., Process],
) -> None:
    join = JOINS[how]
    # Through the file, the scheduler makes up the token and the others read it there.
    env: dict[str, str | None] | None = {"SHOAL_TOKEN": None} if how == "scheduler-file" else None
    _, address = start_scheduler(*join.scheduler_flags(net), env=env)
    assert address == f"tcp://{net.ip('sched')}:8786"
    start_worker("w1", *join.worker_args(net, address), env=env)
    start_worker("w2", *join.worker_args(net, address), env=env)
    client = net.agent("cli", env=env)
    workers = client.call(f"""
from shoal import Client
import _tasks
client = Client({join.client_args(net, address)}, timeout=30)
client.wait_for_workers(2, timeout=60)
sorted(client.scheduler_info()["workers"])
""")
    assert sorted(_host_of(w) for w in workers) == [net.ip("w1"), net.ip("w2")]
    total = client.call("""
import dask
parts = [dask.delayed(_tasks.slow_inc)(i, 0.01) for i in range(20)]
client.compute(dask.delayed(sum)(parts)).result(timeout=60)
""")
    assert total == sum(range(1, 21))
    ran_on = client.call("""
futs = [client.submit(_tasks.where, i, workers=[w], pure=False) for i, w in enumerate(sorted(client.scheduler_info()["workers"]))]
sorted(client.gather(futs))
""")
    assert ran_on == [net.ip("w1"), net.ip("w2")]


def test_workers_fetch_from_each_other_across_hosts(
    net: Network, start_scheduler: Callable[..., tuple[Process, str]],
    start_worker: Callable[..., Process],
) -> None:
    _, address = start_scheduler()
    start_worker("w1", address)
    start_worker("w2", address)
    client = net.agent("cli")
    w1, w2 = client.call(CONNECT.format(address=address, n=2))
    assert (_host_of(w1), _host_of(w2)) == (net.ip("w1"), net.ip("w2"))
    result = client.call(f"""
x = client.submit(_tasks.payload, 1_000_000, workers=[{w1!r}])
y = client.submit(_tasks.length, x, workers=[{w2!r}])
n = y.result(timeout=60)
stream = client._task_stream_since(0)[1]
[n, sorted(client.who_has([x])[x.key]), [(r["worker"], r["kind"]) for r in stream if r["key"] == str(x.key)]]
""")
    n, x_holders, x_records = result
    assert n == 999_936  # the 1 MB input, read on the second worker host
    assert x_holders[0] == w1
    # The second worker host fetched it from the first (the scheduler's task stream records
    # each worker-to-worker transfer under the fetching worker).
    assert (w2, "transfer") in [tuple(r) for r in x_records]
    assert (w1, "compute") in [tuple(r) for r in x_records]


def test_a_worker_host_cut_off_mid_computation_is_dropped_and_rejoins_fresh(
    net: Network, start_scheduler: Callable[..., tuple[Process, str]],
    start_worker: Callable[..., Process],
) -> None:
    _, address = start_scheduler()
    start_worker("w1", address)
    start_worker("w2", address)
    client = net.agent("cli")
    w1, w2 = client.call(CONNECT.format(address=address, n=2))
    client.call("futs = client.map(_tasks.slow_inc, range(40), seconds=0.25, pure=False); 0")

    def both_workers_busy() -> bool:
        done_on = client.call("""
holders = client.who_has(futs)
sorted({w for f in futs if f.done() for w in holders.get(f.key, ())})
""")
        return done_on == sorted([w1, w2])

    wait_for(both_workers_busy, timeout=30, interval=0.1)
    net.link("w2", up=False)  # mid-computation: w2 holds results and runs a task
    assert client.call("sum(f.done() for f in futs)") < 40
    results = client.call("client.gather(futs)", timeout=90)
    assert results == list(range(1, 41))  # finished on w1; w2's results were recomputed

    def dropped() -> bool:
        return w2 not in client.call('list(client.scheduler_info()["workers"])')

    wait_for(dropped, timeout=30, interval=0.2)
    assert client.call("sorted({w for ws in client.who_has(futs).values() for w in ws})") == [w1]

    net.link("w2", up=True)

    def rejoined() -> bool:
        return w2 in client.call('list(client.scheduler_info()["workers"])')

    wait_for(rejoined, timeout=60, interval=0.2)
    # A fresh worker: none of its old results is trusted, and it runs new work.
    assert client.call(f"list(client.has_what([{w2!r}])[{w2!r}])") == []
    assert client.call(f"client.submit(_tasks.where, 1, workers=[{w2!r}]).result(timeout=30)") \
        == net.ip("w2")


def test_workers_reconnect_to_a_scheduler_restarted_on_the_same_address(
    net: Network, start_scheduler: Callable[..., tuple[Process, str]],
    start_worker: Callable[..., Process],
) -> None:
    sched, address = start_scheduler()
    start_worker("w1", address)
    start_worker("w2", address)
    first = net.agent("cli")
    first.call(CONNECT.format(address=address, n=2))
    sched.kill()
    first.proc.kill()

    _, again = start_scheduler()
    assert again == address
    second = net.agent("cli")
    workers = second.call(CONNECT.format(address=address, n=2))
    assert sorted(_host_of(w) for w in workers) == [net.ip("w1"), net.ip("w2")]
    assert second.call("client.submit(_tasks.slow_inc, 41, 0.0).result(timeout=30)") == 42
