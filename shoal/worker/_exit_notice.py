"""A nanny's question to the scheduler when its worker process exited unasked: was it
retired?

Owns: that question (one :class:`~shoal.protocol._messages.NannyWorkerExited`, on the
nanny's short connection: ``_nanny_request``). Why: dask's
``retire_workers`` tells a worker's nanny not to restart it before closing the worker;
shoal's nanny serves no port, and a worker process that dies while it is retired (before
its ``Close`` arrives, or while its data is moved off) cannot say so itself. The
scheduler removes the worker if it had not yet, then answers: from then on a retirement
and the nanny agree. Must not know the nanny's supervision: it is given whom to ask about.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("shoal.nanny")

# The longest a nanny waits for the answer before restarting its worker anyway (a
# reachable scheduler answers in milliseconds; an unreachable one must not keep the
# cluster a worker short).
ASK_TIMEOUT = 2.0


async def was_retired(scheduler: str, *, worker: str, pid: int, name: Any = None,
                      security: Any = None,
                      server_hostname: str | None = None, timeout: float = ASK_TIMEOUT) -> bool:
    """Tell the scheduler at ``scheduler`` that the process of ``worker`` (an address;
    process ``pid``) exited unasked; True when the scheduler says it was retired (closed by
    ``retire_workers``, or dying while being retired). False when it was not, or when the
    scheduler could not be asked within ``timeout`` seconds (logged). Never raises but
    for cancellation."""
    from shoal.protocol._messages import NannyWorkerExited
    from shoal.worker._nanny_request import ask

    response, reason = await ask(scheduler, NannyWorkerExited(1, worker, pid), name=name,
                                 security=security, server_hostname=server_hostname,
                                 timeout=timeout)
    if response is not None:
        return bool(response.ok and response.value)
    logger.warning("could not ask the scheduler whether worker %s was retired (%s); "
                   "restarting it", worker, reason)
    return False
