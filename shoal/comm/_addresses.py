"""Which host a server binds and which address it tells others (dask's ``--host``,
``--interface``, ``--listen-address``, ``--contact-address``).

Owns: turning those flags into a (bind host, bind port(s), advertised host, advertised port)
plan, the address of a named network interface, and the local address that routes to a
given peer. It never advertises a wildcard (``0.0.0.0``/``::``): a peer cannot connect to
one. It knows nothing of messages or of what the servers do with the plan.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})
# A documentation-only address (RFC 5737, TEST-NET-1): connecting a UDP socket to it asks
# the kernel which local address its default route would use, and sends nothing.
_DEFAULT_ROUTE_PROBE = "192.0.2.1"


def is_wildcard(host: str) -> bool:
    """True if binding ``host`` listens on every interface."""
    return host in WILDCARDS


def split_host_port(address: str, what: str) -> tuple[str, int | None]:
    """``tcp://host:port``, ``host:port``, ``host`` or ``[v6]:port`` → (host, port or None).

    Raises:
        ValueError: not one of those forms (the message names ``what``).
    """
    rest = address.strip()
    scheme, sep, after = rest.partition("://")
    if sep:
        if scheme not in ("tcp", "tls"):
            raise ValueError(f"{what} {address!r}: shoal speaks tcp:// (or tls://) only")
        rest = after
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else ""
    elif rest.count(":") == 1:
        host, _, port = rest.partition(":")
    else:
        host, port = rest, ""
    if port and not port.isdigit():
        raise ValueError(f"{what} {address!r} is not of the form 'tcp://host:port'")
    return host, (int(port) if port else None)


def interface_address(name: str) -> str:
    """The IPv4 address (else the first IPv6 one) of the network interface ``name``.

    Raises:
        ValueError: no such interface, or it has no IP address; the message lists the
            interfaces that exist.
    """
    import psutil

    interfaces = psutil.net_if_addrs()
    if name not in interfaces:
        raise ValueError(
            f"no network interface {name!r} on this machine; it has "
            f"{', '.join(sorted(interfaces)) or 'none'} (see `ip address`)"
        )
    addrs = interfaces[name]
    for family in (socket.AF_INET, socket.AF_INET6):
        for a in addrs:
            if a.family == family:
                return a.address.split("%", 1)[0]
    raise ValueError(f"network interface {name!r} has no IP address (see `ip address`)")


def _resolve(host: str) -> tuple[int, str] | None:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except OSError:
        return None
    family, _, _, _, sockaddr = infos[0]
    return family, str(sockaddr[0])


def route_address(peer_host: str) -> str | None:
    """The local address this machine uses to reach ``peer_host`` (the local end of a UDP
    socket connected to it: the kernel picks the route; no packet is sent), or None when
    there is no route to it (or the name does not resolve)."""
    resolved = _resolve(peer_host)
    if resolved is None:
        return None
    family, ip = resolved
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((ip, 9))  # any port: nothing is sent
        except OSError as exc:
            if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
                return None
            raise
        local = str(sock.getsockname()[0])
    return None if is_wildcard(local) else local


def _first_interface_address() -> str | None:
    """The first non-loopback IPv4 address of an interface that is up (sorted by name)."""
    import psutil

    stats = psutil.net_if_stats()
    for name, addrs in sorted(psutil.net_if_addrs().items()):
        if name in stats and not stats[name].isup:
            continue
        for a in addrs:
            if a.family == socket.AF_INET and not ipaddress.ip_address(a.address).is_loopback:
                return str(a.address)
    return None


def reachable_host(towards: str | None = None) -> str:
    """A non-wildcard address of this machine for others to connect to: the local end of
    the route to ``towards`` (the scheduler, for a worker); else of the default route; else
    the first address of an interface that is up; else loopback."""
    for peer in (towards, _DEFAULT_ROUTE_PROBE):
        if peer:
            local = route_address(peer)
            if local is not None and not ipaddress.ip_address(local).is_loopback:
                return local
            if local is not None and peer == towards:
                return local  # the peer is on this machine's loopback: so are we to it
    return _first_interface_address() or "127.0.0.1"


@dataclass(frozen=True)
class AddressPlan:
    """Where a server listens and what it advertises."""

    bind_host: str
    bind_ports: tuple[int, ...]  # tried in order; (0,) picks a free port
    contact_host: str
    contact_port: int | None  # None: the port actually bound

    def contact_address(self, bound_port: int, scheme: str = "tcp") -> str:
        """The address to advertise, given the port the listener actually bound."""
        host = self.contact_host
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.contact_port or bound_port}"


def parse_port_range(value: str | int | None) -> tuple[int, ...]:
    """``9000`` → (9000,); ``"9000:9010"`` → (9000, ..., 9010); None → (0,).

    Raises:
        ValueError: not a port or ``first:last`` range of ports.
    """
    if value is None or value == "":
        return (0,)
    text = str(value)
    first, sep, last = text.partition(":")
    try:
        lo = int(first)
        hi = int(last) if sep else lo
    except ValueError:
        raise ValueError(f"port {value!r} is not a number or a range like '9000:9010'") from None
    if not (0 <= lo <= hi <= 65535):
        raise ValueError(f"port range {value!r} must be 'first:last' with 0 <= first <= last "
                         "<= 65535")
    return tuple(range(lo, hi + 1))


def plan_addresses(
    *,
    host: str | None = None,
    interface: str | None = None,
    listen_address: str | None = None,
    contact_address: str | None = None,
    port: str | int | None = None,
    towards: str | None = None,
    default_host: str = "127.0.0.1",
) -> AddressPlan:
    """Turn dask's address flags into an :class:`AddressPlan`.

    ``host`` or ``interface`` (not both) names what to bind and advertise;
    ``listen_address`` what to bind when the advertised address differs (NAT, containers),
    and ``contact_address`` what to advertise. A wildcard bind (``0.0.0.0``) advertises the
    local address that routes to ``towards`` (the scheduler), never the wildcard. With none
    of them, a server that knows ``towards`` binds and advertises the one local address that
    routes there (loopback for a scheduler on this machine), others ``default_host``.

    Raises:
        ValueError: conflicting flags, an unknown interface, or a malformed address.
    """
    if host is not None and interface is not None:
        raise ValueError("give --host or --interface, not both")
    if listen_address is not None and (host is not None or interface is not None):
        raise ValueError("give --listen-address or --host/--interface, not both")
    ports = parse_port_range(port)
    if listen_address is not None:
        bind_host, bind_port = split_host_port(listen_address, "--listen-address")
        if bind_port is not None:
            if port is not None and ports != (bind_port,):
                raise ValueError("the port is given both by --listen-address and --worker-port")
            ports = (bind_port,)
    elif interface is not None:
        bind_host = interface_address(interface)
    elif host is not None:
        bind_host = host
    elif towards is not None:
        bind_host = reachable_host(towards)
    else:
        bind_host = default_host
    contact_port: int | None = None
    if contact_address is not None:
        contact_host, contact_port = split_host_port(contact_address, "--contact-address")
        if is_wildcard(contact_host):
            raise ValueError(f"--contact-address {contact_address!r} must be an address others "
                             "can connect to, not a wildcard")
    elif is_wildcard(bind_host):
        contact_host = reachable_host(towards)
    else:
        contact_host = bind_host
    if is_wildcard(bind_host):
        bind_host = "::" if bind_host in ("::", "[::]") else "0.0.0.0"
    return AddressPlan(bind_host, ports, contact_host, contact_port)


async def listen_first(ports: tuple[int, ...], open_port: Callable[[int], Awaitable[T]]) -> T:
    """``await open_port(port)`` for the first of ``ports`` that is free (0: any free port);
    ``open_port`` listens on one port with whichever transport the server speaks.

    Raises:
        OSError: every port is taken (the message names the range), or listening failed
            for another reason.
    """
    last: OSError | None = None
    for port in ports:
        try:
            return await open_port(port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            last = exc
    span = str(ports[0]) if len(ports) == 1 else f"{ports[0]}:{ports[-1]}"
    raise OSError(errno.EADDRINUSE, f"could not listen at port {span}: every port is in use "
                  f"({last}); choose a free port or a wider range")
