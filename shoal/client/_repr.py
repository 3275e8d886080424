"""Text and HTML views of a Client (what a notebook shows for ``client``), and dask's dict
types with a notebook view that ``who_has``, ``has_what`` and ``scheduler_info`` return."""

from __future__ import annotations

import html
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoal.client._core import ClientCore as Client  # the protocol: never the facade

logger = logging.getLogger("shoal.client")


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n} B"


def _summary(client: Client) -> dict[str, Any]:
    try:
        info = (client.scheduler_info(asynchronous=False) if client.status == "running"
                else {"workers": {}})
    except Exception as exc:  # a repr must not raise: shown without workers, and said why
        logger.debug("repr of client %s without its workers: %r", client.id, exc)
        info = {"workers": {}}
    workers = info.get("workers", {})
    return {
        "address": getattr(client, "scheduler_address", "?"),
        "dashboard": client.dashboard_link if client.status == "running" else None,
        "workers": len(workers),
        "threads": sum(w["nthreads"] for w in workers.values()),
        "memory": sum(w["memory_limit"] for w in workers.values()),
        "worker_rows": list(workers.values()),
    }


def client_repr(client: Client) -> str:
    if client.status != "running":
        return f"<Client: {client.status}>"
    s = _summary(client)
    return (
        f"<Client: '{s['address']}' processes={s['workers']} threads={s['threads']}, "
        f"memory={format_bytes(s['memory'])}, dashboard={s['dashboard']}>"
    )


def client_repr_html(client: Client) -> str:
    if client.status != "running":
        return f"<p>shoal Client: {html.escape(client.status)}</p>"
    s = _summary(client)
    e = html.escape
    link = s["dashboard"]
    dash = f"<a href='{e(link)}' target='_blank'>{e(link)}</a>" if link else "off"
    kind = type(client.cluster).__name__ if client.cluster is not None else "direct"
    rows = "".join(
        f"<tr><td>{e(str(w['name']))}</td><td>{e(w['address'])}</td><td>{w['nthreads']}</td>"
        f"<td>{format_bytes(w['memory_limit'])}</td></tr>"
        for w in s["worker_rows"]
    )
    return (
        "<div class='shoal-client'><h3>shoal Client</h3>"
        f"<p>Connection: {e(kind)} &middot; Scheduler: {e(s['address'])}<br>"
        f"Dashboard: {dash}<br>Workers: {s['workers']} &middot; Total threads: {s['threads']}"
        f" &middot; Total memory: {format_bytes(s['memory'])}</p>"
        "<table><tr><th>name</th><th>address</th><th>threads</th><th>memory</th></tr>"
        f"{rows}</table></div>"
    )


def _table(title: str, head: tuple[str, str], rows: Any) -> str:
    e = html.escape
    body = "".join(f"<tr><td>{e(str(a))}</td><td>{e(str(b))}</td></tr>" for a, b in rows)
    return (f"<div><h3>{e(title)}</h3><table><tr><th>{e(head[0])}</th><th>{e(head[1])}</th>"
            f"</tr>{body}</table></div>")


class WhoHas(dict):  # type: ignore[type-arg]
    """``client.who_has()``: key -> the workers holding it (dask's type: a dict with a
    notebook view)."""

    def _repr_html_(self) -> str:
        return _table("Who has", ("key", "workers"),
                      ((k, ", ".join(map(str, v))) for k, v in self.items()))


class HasWhat(dict):  # type: ignore[type-arg]
    """``client.has_what()``: worker -> the keys it holds (dask's type: a dict with a
    notebook view)."""

    def _repr_html_(self) -> str:
        return _table("Has what", ("worker", "keys held"),
                      ((w, len(ks)) for w, ks in self.items()))


class SchedulerInfo(dict):  # type: ignore[type-arg]
    """``client.scheduler_info()`` (dask's type: a dict with a notebook view)."""

    def _repr_html_(self) -> str:
        workers = self.get("workers", {})
        rows = [("address", self.get("address", "?")), ("workers", len(workers)),
                ("threads", sum(w.get("nthreads", 0) for w in workers.values())),
                ("memory", format_bytes(sum(w.get("memory_limit") or 0
                                            for w in workers.values())))]
        return _table(f"Scheduler {self.get('id', '')}", ("", ""), rows)
