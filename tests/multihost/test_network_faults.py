"""shoal under network faults on real network stacks (namespaces of ``_netns.py``, faults of
``_faults.py``): silent partitions (nftables drops, no RST), packet loss, latency and a
scheduler that dies, each against what dask.distributed documents for them
(``distributed.scheduler.worker-ttl``, ``distributed.comm.timeouts.connect``/``tcp``, a
worker's ``death-timeout``, the client's lost connection). The conftest's config makes
failure detection take seconds: TTL 4 s, tcp 4 s, connect 3 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from _waiting import wait_for

from . import _faults
from ._netns import Network, Process

CONNECT = """
from shoal import Client
import _tasks
client = Client({address!r}, timeout=30)
client.wait_for_workers({n}, timeout=60)
sorted(client.scheduler_info()["workers"])
"""

Start = Callable[..., tuple[Process, str]]
StartWorker = Callable[..., Process]


def _workers(client: object) -> list[str]:
    return client.call('sorted(client.scheduler_info()["workers"])')  # type: ignore[attr-defined]


def test_a_worker_cut_off_from_the_scheduler_alone_is_dropped_its_work_redone_and_it_rejoins_fresh(
    net: Network, start_scheduler: Start, start_worker: StartWorker,
) -> None:
    """Only the scheduler loses the worker (the client and the other worker still reach it):
    after the TTL the scheduler drops it and recomputes what it held; the results the
    worker finished during the partition never reach the scheduler (no stale holder, no
    duplicate); healed, it rejoins as a fresh worker. Then the scheduler is killed and
    restarted at the same address: the client's pending future is cancelled at once (its
    connection closed), the client reconnects to the new scheduler within its timeout, both
    workers register with it, and the same client computes there (as dask's client and
    workers)."""
    _faults.check_nft()
    sched, address = start_scheduler()
    start_worker("w1", address)
    start_worker("w2", address)
    client = net.agent("cli")
    w1, w2 = client.call(CONNECT.format(address=address, n=2))
    client.call("futs = client.map(_tasks.slow_inc, range(40), seconds=0.25, pure=False); 0")

    def both_hold_results() -> bool:
        return client.call("""
holders = client.who_has(futs)
sorted({w for f in futs if f.done() for w in holders.get(f.key, ())})
""") == [w1, w2]

    wait_for(both_hold_results, timeout=30, interval=0.1)
    _faults.cut(net, "w2", "sched")
    started = time.monotonic()
    results = client.call("client.gather(futs)", timeout=60)
    assert results == list(range(1, 41))
    assert w2 not in _workers(client)
    assert time.monotonic() - started < 40
    assert client.call("sorted({w for ws in client.who_has(futs).values() for w in ws})") == [w1]

    _faults.heal(net, "w2")
    wait_for(lambda: w2 in _workers(client), timeout=40, interval=0.2)
    # Fresh: nothing it computed before or during the partition is taken for a result.
    assert client.call(f"list(client.has_what([{w2!r}])[{w2!r}])") == []
    assert client.call("sorted({w for ws in client.who_has(futs).values() for w in ws})") == [w1]
    assert client.call("client.gather(futs)") == list(range(1, 41))
    assert client.call(f"client.submit(_tasks.where, 7, workers=[{w2!r}]).result(timeout=30)") \
        == net.ip("w2")

    client.call("pending = client.submit(_tasks.slow_inc, 5, 10, pure=False); 0")
    sched.kill()
    started = time.monotonic()
    error = client.call("""
try:
    pending.result()
    outcome = "returned"
except Exception as exc:
    outcome = f"{type(exc).__name__}: {exc}"
outcome
""", timeout=30)
    assert "scheduler-connection-lost" in error, error
    assert time.monotonic() - started < 10
    assert client.call("client.status") == "connecting"
    _, again = start_scheduler()
    assert again == address
    wait_for(lambda: client.call("client.status") == "running", timeout=30, interval=0.2)
    assert client.call("client.wait_for_workers(2, timeout=60); "
                       "sorted(client.scheduler_info()['workers'])") == [w1, w2]
    assert client.call("client.gather(client.map(_tasks.slow_inc, range(4), seconds=0.0))") \
        == [1, 2, 3, 4]


def test_a_partition_between_workers_mid_transfer_ends_the_fetch_and_the_task_still_runs(
    net: Network, start_scheduler: Start, start_worker: StartWorker,
) -> None:
    """w2 fetches an 8 MB input from w1 over a slow link; half-way the two are cut apart
    (both still reach the scheduler). The fetch ends by ``comm.timeouts.tcp``, and the
    dependent gets its input another way (recomputed), not a hang."""
    _faults.check_nft()
    _, address = start_scheduler()
    start_worker("w1", address)
    start_worker("w2", address)
    client = net.agent("cli")
    w1, w2 = client.call(CONNECT.format(address=address, n=2))
    client.call(f"""
x = client.submit(_tasks.payload, 8_000_000, workers=[{w1!r}], allow_other_workers=True)
x.result(timeout=30) and 0
""")
    _faults.shape(net, "w1", "8mbit")  # ~1 MB/s: the transfer takes about 8 s
    before = _faults.rx_bytes(net, "w2")
    client.call(f"y = client.submit(_tasks.length, x, workers=[{w2!r}]); 0")
    wait_for(lambda: _faults.rx_bytes(net, "w2") - before > 1_500_000, timeout=20, interval=0.05)
    _faults.cut(net, "w2", "w1")
    started = time.monotonic()
    assert client.call("y.result(timeout=60)", timeout=70) == 8_000_000
    assert time.monotonic() - started < 40


def test_a_client_cut_off_from_the_scheduler_gets_an_error_not_a_hang(
    net: Network, start_scheduler: Start, start_worker: StartWorker,
) -> None:
    """The client's host loses the scheduler silently (no FIN, no RST) while it keeps
    submitting (its writes are never acknowledged, so keepalive alone never fires) and
    while a future it waits on without a timeout is pending: gather and result() end with
    the lost-connection error within about ``comm.timeouts.tcp``, as dask's client (its TCP
    user timeout; every future cancelled "scheduler-connection-lost"). The client keeps
    trying to reconnect (each attempt bounded by ``comm.timeouts.connect``); healed within
    its timeout, it is back, and computes (as dask's client).
    Last, the scheduler's host goes silent (its cable cut) while the worker heartbeats into
    it: the worker notices within about ``comm.timeouts.tcp``, finds no scheduler to
    register with for its ``--death-timeout`` and exits (no process left hanging)."""
    _faults.check_nft()
    _, address = start_scheduler()
    worker = start_worker("w1", address, "--death-timeout", "4")
    client = net.agent("cli")
    client.call(CONNECT.format(address=address, n=1))
    client.call("slow = client.submit(_tasks.slow_inc, 1, 10); 0")  # still pending when noticed
    _faults.cut(net, "cli", "sched")
    started = time.monotonic()
    errors = client.call("""
def outcome(f):
    try:
        f()
        return "returned"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
[outcome(lambda: client.gather(client.map(_tasks.slow_inc, range(200), seconds=0.0, pure=False))),
 outcome(slow.result)]
""", timeout=60)
    waited = time.monotonic() - started
    for error in errors:
        assert "scheduler-connection-lost" in error, error
    assert waited < 20, waited
    assert client.call("client.status") == "connecting"

    _faults.heal(net, "cli")
    wait_for(lambda: client.call("client.status") == "running", timeout=25, interval=0.2)
    assert client.call("client.submit(_tasks.slow_inc, 41, 0.0).result(timeout=30)") == 42

    net.link("sched", up=False)
    wait_for(lambda: worker.popen.poll() is not None, timeout=30, interval=0.2)
    assert "death timeout" in worker.output()


def test_a_slow_lossy_network_still_computes_the_right_answers(
    net: Network, start_scheduler: Start, start_worker: StartWorker,
) -> None:
    """100 ms round trips to the scheduler (a delaying relay) and 2 % packet loss on every
    worker and client host: map + gather and a dask.array sum finish, and are right."""
    _faults.check_nft()
    start_scheduler()
    relay_ip = "10.213.0.11"
    net.add_address("sched", relay_ip)
    relay = _faults.relay(net, "sched", relay_ip, 8786, net.ip("sched"), 50)
    wait_for(lambda: "relaying" in relay.output(), timeout=20, interval=0.05)
    slow_address = f"tcp://{relay_ip}:8786"
    start_worker("w1", slow_address)
    start_worker("w2", slow_address)
    client = net.agent("cli")
    client.call(CONNECT.format(address=slow_address, n=2))
    client.call("import dask.array as da; import numpy as np; 0")
    for host in ("w1", "w2", "cli"):
        _faults.lose(net, host, 2)
    started = time.monotonic()
    assert client.call("""
futs = client.map(_tasks.slow_inc, range(50), seconds=0.0)
client.gather(futs)
""", timeout=60) == list(range(1, 51))
    assert client.call("""
x = da.arange(200_000, chunks=20_000)
[int(client.compute(x.sum()).result(timeout=60)), int(np.arange(200_000).sum())]
""", timeout=70) == [int(sum(range(200_000)))] * 2
    assert time.monotonic() - started < 60
