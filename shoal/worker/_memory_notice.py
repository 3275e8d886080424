"""A nanny's own word to the scheduler that it kills its worker for memory.

Owns: that notice (one :class:`~shoal.protocol._messages.NannyMemoryTerminated`, on the
nanny's short connection: ``_nanny_request``). Why: the
worker says it itself when the nanny signals it (``MemoryTerminated``), but a worker whose
event loop cannot run (a task holding the GIL) does not within the nanny's grace, and its
KilledWorker then said nothing of memory. The nanny measured the memory to decide the kill:
it says so, and kills once the scheduler noted it, so that the worker's loss comes after.
Must not know the nanny's supervision: it is given what to say.
"""

from __future__ import annotations

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
    from shoal.protocol._messages import NannyMemoryTerminated
    from shoal.worker._nanny_request import ask

    request = NannyMemoryTerminated(1, worker, process, limit, fraction)
    response, reason = await ask(scheduler, request, name=name, security=security,
                                 server_hostname=server_hostname, timeout=timeout)
    if response is not None:
        return True
    logger.warning("could not tell the scheduler that worker %s is killed for memory (%s); "
                   "a task it ran may fail with a KilledWorker that does not say so",
                   worker, reason)
    return False
