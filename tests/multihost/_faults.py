"""Network faults inside the namespaces of a ``Network`` (``_netns.py``), on real network
stacks: nftables rules in one host (a silent drop, no RST: a partition between chosen
hosts, random packet loss) and a relay that delays every byte (this kernel has no netem
qdisc, see ``_relay.py``). Every rule lives in the host's own namespace, deleted with it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from ._netns import HERE, Network, Process, skip_unless_required

_TABLE = "shoalfault"


def check_nft() -> None:
    """Skip (or fail, where the multi-host tests must run) without the ``nft`` command."""
    if shutil.which("nft") is None:
        skip_unless_required("the `nft` command (Debian's nftables) is not installed; "
                             "`make multihost-tools` installs it")


def nft(net: Network, host: str, script: str) -> None:
    """Apply an nft ``script`` in ``host``'s namespace."""
    proc = subprocess.run(["ip", "netns", "exec", net.ns(host), "nft", "-f", "-"], input=script,
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"nft in {host} failed: {proc.stderr.strip()}\n{script}")


def _table(body: str) -> str:
    return (f"table inet {_TABLE} {{\n"
            f"  chain in {{ type filter hook input priority 0; policy accept;\n{body}  }}\n"
            f"  chain out {{ type filter hook output priority 0; policy accept;\n{body}  }}\n"
            "}\n")


def _reset() -> str:
    # "add" then "delete" deletes the table whether or not it existed.
    return f"add table inet {_TABLE}\ndelete table inet {_TABLE}\n"


def cut(net: Network, host: str, *peers: str) -> None:
    """Drop, silently, every packet between ``host`` and each of ``peers`` (both ways, in
    ``host``): a partition between those hosts alone, every socket left open."""
    body = "".join(f"    ip saddr {net.ip(p)} drop\n    ip daddr {net.ip(p)} drop\n"
                   for p in peers)
    nft(net, host, _reset() + _table(body))


def lose(net: Network, host: str, percent: int) -> None:
    """Drop ``percent`` % of the packets ``host`` sends and receives on eth0, at random."""
    body = (f'    iifname "eth0" numgen random mod 100 < {percent} drop\n'
            f'    oifname "eth0" numgen random mod 100 < {percent} drop\n')
    nft(net, host, _reset() + _table(body))


def heal(net: Network, host: str) -> None:
    """Remove every fault rule of ``host``."""
    nft(net, host, _reset())


def rx_bytes(net: Network, host: str) -> int:
    """Bytes ``host``'s eth0 received so far."""
    out = subprocess.run(["ip", "netns", "exec", net.ns(host), "cat",
                          "/sys/class/net/eth0/statistics/rx_bytes"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return int(out)


def shape(net: Network, host: str, rate: str) -> None:
    """Limit what ``host`` sends on eth0 to ``rate`` (tc's token bucket, e.g. "4mbit")."""
    subprocess.run(["ip", "netns", "exec", net.ns(host), "tc", "qdisc", "replace", "dev",
                    "eth0", "root", "tbf", "rate", rate, "burst", "16kb", "latency", "400ms"],
                   capture_output=True, text=True, timeout=30, check=True)


def relay(net: Network, host: str, listen: str, port: int, target: str, delay_ms: int) -> Process:
    """A relay in ``host`` from ``listen:port`` to ``target:port`` that holds every byte
    ``delay_ms`` ms each way (so a round trip through it takes twice that)."""
    return net.spawn(host, [sys.executable, "-u", str(HERE / "_relay.py"), listen, str(port),
                            target, str(port), str(delay_ms)])
