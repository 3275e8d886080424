"""Address plans: what a server binds and what it advertises (dask's --host, --interface,
--listen-address, --contact-address, --worker-port)."""

from __future__ import annotations

import asyncio
import errno
import socket

import psutil
import pytest

from shoal.comm._addresses import (
    interface_address,
    listen_first,
    parse_port_range,
    plan_addresses,
    reachable_host,
    route_address,
    split_host_port,
)


def _loopback_interface() -> str:
    for name, addrs in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and a.address == "127.0.0.1" for a in addrs):
            return name
    pytest.fail("this machine has no interface holding 127.0.0.1")


def test_a_plain_host_is_bound_and_advertised() -> None:
    plan = plan_addresses(host="127.0.0.1")
    assert (plan.bind_host, plan.bind_ports, plan.contact_host) == ("127.0.0.1", (0,), "127.0.0.1")
    assert plan.contact_address(4321) == "tcp://127.0.0.1:4321"


def test_a_wildcard_bind_advertises_the_address_that_routes_to_the_scheduler() -> None:
    plan = plan_addresses(host="0.0.0.0", towards="127.0.0.1")
    assert plan.bind_host == "0.0.0.0"
    assert plan.contact_host == "127.0.0.1"
    assert "0.0.0.0" not in plan.contact_address(1)


def test_a_wildcard_bind_without_a_peer_never_advertises_the_wildcard() -> None:
    host = reachable_host()
    assert host not in ("0.0.0.0", "::", "")
    socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)


def test_without_flags_a_worker_binds_only_the_address_routing_to_its_scheduler() -> None:
    plan = plan_addresses(towards="127.0.0.1")
    assert (plan.bind_host, plan.contact_host) == ("127.0.0.1", "127.0.0.1")


def test_an_interface_binds_and_advertises_its_address() -> None:
    name = _loopback_interface()
    assert interface_address(name) == "127.0.0.1"
    plan = plan_addresses(interface=name)
    assert (plan.bind_host, plan.contact_host) == ("127.0.0.1", "127.0.0.1")


def test_an_unknown_interface_is_refused_naming_the_ones_that_exist() -> None:
    with pytest.raises(ValueError, match="no network interface 'nosuch0'.*" + _loopback_interface()):
        plan_addresses(interface="nosuch0")


def test_listen_and_contact_addresses_differ_as_behind_nat() -> None:
    plan = plan_addresses(listen_address="tcp://0.0.0.0:9123",
                          contact_address="tcp://203.0.113.7:19123")
    assert (plan.bind_host, plan.bind_ports) == ("0.0.0.0", (9123,))
    assert plan.contact_address(9123) == "tcp://203.0.113.7:19123"


def test_a_contact_address_without_port_advertises_the_bound_port() -> None:
    plan = plan_addresses(host="0.0.0.0", contact_address="203.0.113.7")
    assert plan.contact_address(5555) == "tcp://203.0.113.7:5555"


@pytest.mark.parametrize("flags", [
    {"host": "127.0.0.1", "interface": "lo"},
    {"host": "127.0.0.1", "listen_address": "tcp://0.0.0.0:1"},
    {"contact_address": "tcp://0.0.0.0:1"},
    {"listen_address": "tcp://0.0.0.0:1", "port": "2"},
    {"port": "9010:9000"},
    {"port": "http"},
])
def test_conflicting_or_malformed_flags_are_refused(flags: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        plan_addresses(**flags)


def test_port_ranges() -> None:
    assert parse_port_range(None) == (0,)
    assert parse_port_range(9000) == (9000,)
    assert parse_port_range("9000:9002") == (9000, 9001, 9002)


def test_addresses_split_into_host_and_port() -> None:
    assert split_host_port("tcp://10.0.0.5:8786", "x") == ("10.0.0.5", 8786)
    assert split_host_port("node1", "x") == ("node1", None)
    assert split_host_port("[::1]:80", "x") == ("::1", 80)
    with pytest.raises(ValueError, match="tcp://"):
        split_host_port("udp://10.0.0.5:1", "x")


def test_no_route_means_none() -> None:
    assert route_address("no-such-host.invalid") is None
    assert route_address("127.0.0.1") == "127.0.0.1"


def test_listen_first_skips_ports_in_use_and_names_the_range_when_all_are() -> None:
    async def main() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        def open_port(port: int) -> object:
            return asyncio.start_server(handler, "127.0.0.1", port)

        first = await listen_first((0,), open_port)  # type: ignore[arg-type]
        taken = first.sockets[0].getsockname()[1]
        try:
            with pytest.raises(OSError, match=f"port {taken}: every port is in use") as info:
                await listen_first((taken,), open_port)  # type: ignore[arg-type]
            assert info.value.errno == errno.EADDRINUSE
            second = await listen_first((taken, 0), open_port)  # type: ignore[arg-type]
            assert second.sockets[0].getsockname()[1] != taken
            second.close()
        finally:
            first.close()

    asyncio.run(main())
