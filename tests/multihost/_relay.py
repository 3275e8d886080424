"""A TCP relay that delays every byte by a fixed time each way, for the multi-host tests'
high-latency runs (the test kernel has no netem qdisc). Usage:
``_relay.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS``. Prints "relaying"
once it listens; runs until killed (the test's ``Network.close``)."""

from __future__ import annotations

import asyncio
import sys


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:  # ends: the empty chunk that marks the end of the stream
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                writer.close()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.ensure_future(deliver())
    try:
        while True:  # ends: the peer closes (an empty read) or the connection fails
            data = await reader.read(65536)
            queue.put_nowait((loop.time() + delay, data))
            if not data:
                break
    except OSError:
        queue.put_nowait((loop.time(), b""))
    try:
        await sender
    except OSError:
        writer.close()


async def main() -> None:
    listen, lport, target, tport, delay_ms = sys.argv[1:6]
    delay = int(delay_ms) / 1000

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection(target, int(tport))
        except OSError:
            w.close()
            return
        await asyncio.gather(_pump(r, uw, delay), _pump(ur, w, delay), return_exceptions=True)

    server = await asyncio.start_server(handle, listen, int(lport))
    print("relaying", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
