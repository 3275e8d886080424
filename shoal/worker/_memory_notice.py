"""A nanny's own word to the scheduler that it kills its worker for memory.

Owns: that one short connection (``Hello`` role ``"nanny"``, one
:class:`~shoal.protocol._messages.NannyMemoryTerminated`, its ``Response``). Why: the
worker says it itself when the nanny signals it (``MemoryTerminated``), but a worker whose
event loop cannot run (a task holding the GIL) does not within the nanny's grace, and its
KilledWorker then said nothing of memory. The nanny measured the memory to decide the kill:
it says so, and kills once the scheduler noted it, so that the worker's loss comes after.
Must not know the nanny's supervision: it is given what to say.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger("shoal.nanny")

# The longest a memory kill waits for the scheduler to note why (a reachable scheduler
# answers in milliseconds; an unreachable one must not keep a worker past its limit alive).
NOTICE_TIMEOUT = 2.0


async def tell_scheduler(scheduler: str, *, worker: str, process: int, limit: int,
                         fraction: float, name: Any = None, security: Any = None,
                         server_hostname: str | None = None,
                         timeout: float = NOTICE_TIMEOUT) -> bool:
    """Tell the scheduler at ``scheduler`` that ``worker`` is killed for memory (its
    process took ``process`` bytes, past ``fraction`` of ``limit``); True once it noted
    it, False when it could not be told within ``timeout`` seconds (logged). Never raises
    but for cancellation."""
    from shoal.comm._tcp import connect
    from shoal.protocol._messages import (
        PROTOCOL_VERSION,
        Hello,
        Message,
        NannyMemoryTerminated,
        Response,
    )

    conn = None
    try:
        async with asyncio.timeout(timeout):  # ends: the answer, the connection's loss, or this
            conn = await connect(scheduler, timeout, security=security, role="worker",
                                 server_hostname=server_hostname)
            noted: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

            def on_batch(_conn: Any, batch: list[Message] | None) -> None:
                if noted.done():
                    return
                if batch is None:
                    noted.set_result(False)
                elif any(type(m) is Response and m.request_id == 1 for m in batch):
                    noted.set_result(True)

            conn.set_handler(on_batch)
            conn.send_many([Hello("nanny", PROTOCOL_VERSION, str(name)),
                            NannyMemoryTerminated(1, worker, process, limit, fraction)])
            if await noted:
                return True
            reason = "the scheduler closed the connection"
    except TimeoutError:
        reason = f"no answer within {timeout:g} s"
    except OSError as exc:
        reason = str(exc)
    finally:
        if conn is not None:
            conn.close()
    logger.warning("could not tell the scheduler that worker %s is killed for memory (%s); "
                   "a task it ran may fail with a KilledWorker that does not say so",
                   worker, reason)
    return False
