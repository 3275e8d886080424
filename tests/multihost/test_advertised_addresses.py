"""Which address a scheduler and workers advertise on a machine with a real network
interface (``--host``, ``--interface``, ``--listen-address``, ``--contact-address``,
``--worker-port``): always one the other hosts can reach, never 0.0.0.0."""

from __future__ import annotations

from collections.abc import Callable

from ._netns import Agent, Network, Process
from .test_across_hosts import CONNECT


def _cross_fetch(client: Agent, src: str, dst: str) -> int:
    """Bytes of data made on ``src`` read by a task on ``dst``."""
    return int(client.call(f"""
x = client.submit(_tasks.payload, 100_000, workers=[{src!r}], pure=False)
client.submit(_tasks.length, x, workers=[{dst!r}]).result(timeout=60)
"""))


def test_wildcard_binds_advertise_the_address_that_reaches_the_scheduler(
    net: Network, start_scheduler: Callable[..., tuple[Process, str]],
    start_worker: Callable[..., Process],
) -> None:
    _, address = start_scheduler("--host", "0.0.0.0")
    assert address == f"tcp://{net.ip('sched')}:8786"
    start_worker("w1", address, "--host", "0.0.0.0")
    start_worker("w2", address, "--interface", "eth0")
    client = net.agent("cli")
    w1, w2 = client.call(CONNECT.format(address=address, n=2))
    assert w1.startswith(f"tcp://{net.ip('w1')}:")
    assert w2.startswith(f"tcp://{net.ip('w2')}:")
    assert _cross_fetch(client, w1, w2) == _cross_fetch(client, w2, w1) == 99_840


def test_a_worker_advertises_its_contact_address_and_binds_its_listen_address(
    net: Network, start_scheduler: Callable[..., tuple[Process, str]],
    start_worker: Callable[..., Process],
) -> None:
    _, address = start_scheduler("--interface", "eth0")
    assert address == f"tcp://{net.ip('sched')}:8786"
    # As behind NAT: the advertised address is not the one the worker's host would pick.
    contact = "10.213.0.13"
    net.add_address("w2", contact)
    start_worker("w1", address, "--worker-port", "9200")  # no address flag: the route's
    start_worker("w2", address, "--listen-address", "tcp://0.0.0.0:9100",
                 "--contact-address", f"tcp://{contact}:9100")
    client = net.agent("cli")
    workers = client.call(CONNECT.format(address=address, n=2))
    assert workers == [f"tcp://{contact}:9100", f"tcp://{net.ip('w1')}:9200"]
    w2, w1 = workers
    assert _cross_fetch(client, w1, w2) == _cross_fetch(client, w2, w1) == 99_840


def test_worker_flags_that_conflict_are_refused_with_the_reason(net: Network) -> None:
    proc = net.shoal("w1", "worker", "tcp://10.213.0.1:8786", "--host", "0.0.0.0",
                     "--interface", "eth0")
    assert proc.popen.wait(30) == 2
    assert "give --host or --interface, not both" in proc.output()
    proc = net.shoal("w1", "worker", "tcp://10.213.0.1:8786", "--interface", "wlan9")
    assert proc.popen.wait(30) == 2
    assert "no network interface 'wlan9'" in proc.output() and "eth0" in proc.output()
    proc = net.shoal("w1", "worker", "tcp://10.213.0.1:8786", "--nworkers", "2",
                     "--worker-port", "9000")
    assert proc.popen.wait(30) == 2
    assert "give --worker-port a range" in proc.output()
