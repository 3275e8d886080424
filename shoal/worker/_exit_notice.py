"""A nanny's question to the scheduler when its worker process exited unasked: was it
retired?

Owns: that one short connection (``Hello`` role ``"nanny"``, one
:class:`~shoal.protocol._messages.NannyWorkerExited`, its ``Response``). Why: dask's
``retire_workers`` tells a worker's nanny not to restart it before closing the worker;
shoal's nanny serves no port, and a worker process that dies while it is retired (before
its ``Close`` arrives, or while its data is moved off) cannot say so itself. The
scheduler removes the worker if it had not yet, then answers: from then on a retirement
and the nanny agree. Must not know the nanny's supervision: it is given whom to ask about.
"""

from __future__ import annotations

import asyncio
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
    from shoal.comm._tcp import connect
    from shoal.protocol._messages import (
        PROTOCOL_VERSION,
        Hello,
        Message,
        NannyWorkerExited,
        Response,
    )

    conn = None
    try:
        async with asyncio.timeout(timeout):  # ends: the answer, the connection's loss, or this
            conn = await connect(scheduler, timeout, security=security, role="worker",
                                 server_hostname=server_hostname)
            answer: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()

            def on_batch(_conn: Any, batch: list[Message] | None) -> None:
                if answer.done():
                    return
                if batch is None:
                    answer.set_result(None)
                    return
                for m in batch:
                    if type(m) is Response and m.request_id == 1:
                        answer.set_result(bool(m.ok and m.value))
                        return

            conn.set_handler(on_batch)
            conn.send_many([Hello("nanny", PROTOCOL_VERSION, str(name)),
                            NannyWorkerExited(1, worker, pid)])
            retired = await answer
            if retired is not None:
                return retired
            reason = "the scheduler closed the connection"
    except TimeoutError:
        reason = f"no answer within {timeout:g} s"
    except OSError as exc:
        reason = str(exc)
    finally:
        if conn is not None:
            conn.close()
    logger.warning("could not ask the scheduler whether worker %s was retired (%s); "
                   "restarting it", worker, reason)
    return False
