"""One request from a nanny to the scheduler on a short connection of its own.

Owns: the connection (``Hello`` role ``"nanny"``, the request numbered 1, its
``Response``), bounded by a timeout, and saying why there was no answer. Why: a nanny
serves no port and keeps no connection to the scheduler; the few things it must tell it
(a memory kill: ``_memory_notice``; a worker that exited unasked: ``_exit_notice``) each
take one question and one answer. Must not know what the requests mean.
"""

from __future__ import annotations

import asyncio
from typing import Any

from shoal.protocol._messages import Message, Response


async def ask(scheduler: str, request: Message, *, name: Any, security: Any,
              server_hostname: str | None, timeout: float) -> tuple[Response | None, str]:
    """Send ``request`` (its request id must be 1) to the scheduler at ``scheduler`` as a
    nanny named ``name``; ``(its Response, "")``, or ``(None, why there was none)`` when
    the connection failed, closed or gave no answer within ``timeout`` seconds. Never raises
    but for cancellation."""
    from shoal.comm._tcp import connect
    from shoal.protocol._messages import PROTOCOL_VERSION, Hello

    conn = None
    try:
        async with asyncio.timeout(timeout):  # ends: the answer, the connection's loss, or this
            conn = await connect(scheduler, timeout, security=security, role="worker",
                                 server_hostname=server_hostname)
            answer: asyncio.Future[Response | None] = (
                asyncio.get_running_loop().create_future())

            def on_batch(_conn: Any, batch: list[Message] | None) -> None:
                if answer.done():
                    return
                if batch is None:
                    answer.set_result(None)
                    return
                for m in batch:
                    if type(m) is Response and m.request_id == 1:
                        answer.set_result(m)
                        return

            conn.set_handler(on_batch)
            conn.send_many([Hello("nanny", PROTOCOL_VERSION, str(name)), request])
            response = await answer
            if response is not None:
                return response, ""
            return None, "the scheduler closed the connection"
    except TimeoutError:
        return None, f"no answer within {timeout:g} s"
    except OSError as exc:
        return None, str(exc)
    finally:
        if conn is not None:
            conn.close()
