"""The worker's data server: connections to its listening socket from peers and clients,
and the ``GetData`` replies sent on them (small ones inline; big or costly ones pickled in
the serializing thread and sent in pieces; spilled ones from their files). Replies to this
worker's own fetches and actor calls arrive on peer connections too and are routed here."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from typing import Any

from shoal.comm import Connection
from shoal.comm._tcp import TCPConnection
from shoal.protocol._messages import ActorCall, Data, GetData, Hello, Message
from shoal.protocol._pieces import split_by_size, whole
from shoal.protocol._serialize import Serialized, costly_to_pickle, dumps
from shoal.protocol._sizeof import nbytes as measure
from shoal.worker._spill import SpillBuffer
from shoal.worker._worker_base import WorkerBase

logger = logging.getLogger("shoal.worker")

SPILLED_SENDS = 2  # fetches answered from disk at once (each holds its values in memory)


class ServingMixin(WorkerBase):
    """Answering peers and clients on the worker's listening socket."""

    def _on_incoming(self, conn: TCPConnection) -> None:
        if self._closed.is_set():
            conn.close()
            return
        self._incoming.add(conn)
        conn.set_handler(self._on_peer_message)

    def _on_peer_message(self, conn: Connection, batch: list[Message] | None) -> None:
        if batch is None:
            self._incoming.discard(conn)  # type: ignore[arg-type]
            return
        for msg in batch:
            if isinstance(msg, GetData):
                data = self.data
                if isinstance(data, SpillBuffer) and any(data.on_disk(k) for k in msg.keys):
                    self._spawn(self._send_spilled(conn, msg, data))
                    continue
                values = {k: self.data[k] for k in msg.keys if k in self.data}
                missing = [k for k in msg.keys if k not in values]
                sizes = self._sizes(values)
                # A reader behind on this connection (its buffer past the high-water mark)
                # gets its reply once the buffer drained, never queued on top.
                if conn.writing_paused or sum(sizes.values()) > self.message_bytes_limit or any(
                    costly_to_pickle(v, sizes[k]) for k, v in values.items()
                ):
                    self._spawn(self._send_data_off_loop(conn, msg.request_id, values, missing,
                                                         sizes))
                else:
                    items, errors = self._pickle_values(values)
                    conn.send(Data(msg.request_id, items, missing, errors))
            elif isinstance(msg, Data):
                whole_msg = whole(conn.info, msg)
                if whole_msg is None:
                    continue  # more pieces of this reply follow
                msg = whole_msg
                # Matched on this connection only: a peer cannot answer another's fetch.
                fut = conn.info.get("requests", {}).pop(msg.request_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
            elif isinstance(msg, ActorCall):
                assert self._actors is not None
                self._actors.on_call(conn, msg)
            elif isinstance(msg, Hello):
                pass
            else:
                logger.warning("closing peer connection: unexpected %s", msg.tag)
                conn.close()

    def _serializing_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._serializer is None:
            self._serializer = concurrent.futures.ThreadPoolExecutor(
                2, thread_name_prefix="shoal-serialize"
            )
        return self._serializer

    def _sizes(self, values: dict[Any, Any]) -> dict[Any, int]:
        assert self.state is not None
        held = self.state.held
        out = {}
        for key, value in values.items():
            nbytes = held.get(key)
            out[key] = nbytes if nbytes is not None else measure(value)
        return out

    def _pickle_values(self, values: dict[Any, Any]) -> tuple[dict[Any, Serialized], dict[Any, Any]]:
        items: dict[Any, Serialized] = {}
        errors: dict[Any, Any] = {}
        for key, value in values.items():
            try:
                items[key] = dumps(value)
            except Exception as exc:
                errors[key] = self._unsendable(key, exc)
        return items, errors

    async def _send_data_off_loop(self, conn: Connection, request_id: int,
                                  values: dict[Any, Any], missing: list[Any],
                                  sizes: dict[Any, int]) -> None:
        """Answer with big values in pieces of at most ``message_bytes_limit`` bytes (dask's
        ``distributed.worker.transfer.message-bytes-limit``), each sent once the previous
        one has left the socket buffer (so many or slow readers never make this worker
        hold more than a piece per reader). Costly values are pickled in the serializing
        thread: the loop keeps serving the scheduler, peers and finished tasks meanwhile.
        At most ``distributed.worker.connections.incoming`` such replies go out at once."""
        if self._serve_slots is None:
            self._serve_slots = asyncio.Semaphore(self.connection_limits[1])
        async with self._serve_slots:
            await self._send_pieces(conn, request_id, values, missing, sizes)

    async def _send_pieces(self, conn: Connection, request_id: int, values: dict[Any, Any],
                           missing: list[Any], sizes: dict[Any, int]) -> None:
        loop = asyncio.get_running_loop()
        runs = split_by_size(list(values), sizes, self.message_bytes_limit)
        for i, keys in enumerate(runs):
            part = {k: values[k] for k in keys}
            if any(costly_to_pickle(v, sizes[k]) for k, v in part.items()):
                items, errors = await loop.run_in_executor(
                    self._serializing_pool(), self._pickle_values, part
                )
            else:
                items, errors = self._pickle_values(part)
            if conn.closed:
                return
            try:
                await asyncio.wait_for(conn.drain(), self.fetch_timeout)
            except asyncio.TimeoutError:
                logger.warning("closing connection to %s: it read nothing for %g s while "
                               "sent data", conn.peer, self.fetch_timeout)
                conn.close()
                return
            last = i == len(runs) - 1
            conn.send(Data(request_id, items, missing if last else [], errors, not last))

    async def _send_spilled(self, conn: Connection, msg: GetData, store: SpillBuffer) -> None:
        """Answer a fetch of values some of which are on disk. Their files are streamed as
        they are (``TCPConnection.send_streamed``: big buffers read a chunk at a time as the
        socket drains, never unpickled here, nor brought back into the store's memory), so
        a value too big for this worker's memory is served without reading it whole; the
        others are pickled in the serializing thread. The reply goes in pieces of at most
        ``message_bytes_limit`` bytes, as :meth:`_send_data_off_loop`'s."""

        def collect(keys: list[Any]) -> tuple[dict[Any, Serialized], list[Any],
                                              dict[Any, Any], list[Any]]:
            items: dict[Any, Serialized] = {}
            values: dict[Any, Any] = {}
            missing: list[Any] = []
            files: list[Any] = []
            try:
                for key in keys:
                    try:
                        got = store.streamable(key) if streaming else None
                        if got is not None:
                            items[key], opened = got
                            files.extend(opened)
                        else:
                            ser = None if streaming else store.serialized(key)
                            if ser is not None:
                                items[key] = ser
                            else:
                                values[key] = store[key]
                    except KeyError:
                        missing.append(key)
            except BaseException:
                for f in files:
                    f.close()
                raise
            pickled, errors = self._pickle_values(values)
            items.update(pickled)
            return items, missing, errors, files

        streaming = isinstance(conn, TCPConnection)
        loop = asyncio.get_running_loop()
        if self._disk_sends is None:
            self._disk_sends = asyncio.Semaphore(SPILLED_SENDS)
        assert self.state is not None
        held = self.state.held
        sizes = {k: held.get(k) or 0 for k in msg.keys}
        runs = split_by_size(list(msg.keys), sizes, self.message_bytes_limit)
        # Bounded: values read from disk for peers are memory too; the next piece is read
        # only once the previous one has left (the socket drained).
        async with self._disk_sends:
            for i, keys in enumerate(runs):
                if conn.closed:
                    return
                try:
                    items, missing, errors, files = await loop.run_in_executor(
                        self._serializing_pool(), collect, keys)
                except OSError as exc:  # a spill file went missing or unreadable
                    logger.error("worker %s could not read spilled data for a fetch: %s",
                                 self.address, exc)
                    items, missing, errors, files = {}, list(keys), {}, []
                reply = Data(msg.request_id, items, missing, errors, i < len(runs) - 1)
                try:
                    if isinstance(conn, TCPConnection):
                        await conn.send_streamed(reply, self.fetch_timeout)
                    else:
                        conn.send(reply)
                        await conn.drain()
                finally:
                    for f in files:
                        f.close()

    def _unsendable(self, key: Any, exc: BaseException) -> dict[str, Any]:
        from shoal.protocol._errors import exception_to_error

        unsendable = TypeError(
            f"the result of {key!r} ({type(self.data.get(key)).__name__}) cannot be sent to "
            f"another process: {exc}. Return picklable values from tasks whose results other "
            "tasks or the client use."
        )
        return exception_to_error(unsendable, None, key, self.address, time.time())
