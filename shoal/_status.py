"""``Status``: the states a cluster, scheduler, worker or nanny can be in (dask's
``distributed.core.Status``: the same members, with the same values).

Owns: the names. Must not know: who is in which state or why.

A ``str`` too, so shoal's own ``status == "running"`` and a program's
``cluster.status == Status.running`` (or ``is Status.running``) both hold. ``str()`` and
``format()`` give ``"Status.running"``, as dask's do; ``.value`` gives ``"running"``.
"""

from __future__ import annotations

import enum


class Status(str, enum.Enum):
    """Where a cluster, scheduler, worker or nanny is in its life (dask's names and values).

    ``LocalCluster.status``, ``Scheduler.status``, ``Worker.status``, ``Nanny.status`` and
    ``get_worker().status`` are members of it. (``Client.status`` is a plain string, as in
    dask: ``"running"``, ``"connecting"``, ``"closing"``, ``"closed"``.)
    """

    undefined = "undefined"
    created = "created"
    init = "init"
    starting = "starting"
    running = "running"
    paused = "paused"
    stopping = "stopping"
    stopped = "stopped"
    closing = "closing"
    closing_gracefully = "closing_gracefully"
    closed = "closed"
    failed = "failed"  # (e.g. a shoal.Worker started by hand whose start raised)
    dont_reply = "dont_reply"

    def __str__(self) -> str:
        return f"Status.{self.name}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)
