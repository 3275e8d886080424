"""The worker under a memory limit: its spilling data store, the monitor that samples the
process's memory and carries out the policy (spill, pause, resume), and pausing: no new
tasks nor fetches until memory falls back. The policy itself is pure: ``_memory.py``."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import MutableMapping
from typing import Any

import psutil

from shoal.protocol._messages import MemoryPaused, MemoryTerminated
from shoal.worker._memory import MemoryLimits, Pause, Resume, max_spill_bytes
from shoal.worker._spill import SpillBuffer, spill_compression
from shoal.worker._trim import trim_heap
from shoal.worker._worker_base import WorkerBase

logger = logging.getLogger("shoal.worker")

_NOT_GIVEN = "<config>"  # the nanny did not say: read dask's config

# As dask's "Unmanaged memory use is high" warning: at most one per worker in this time.
UNMANAGED_WARNING_INTERVAL = 300.0  # seconds
_MEMORY_NOT_RELEASED = ("https://distributed.dask.org/en/latest/worker-memory.html"
                        "#memory-not-released-back-to-the-os")


def _mb(nbytes: int) -> str:
    return f"{nbytes / 2**20:.0f} MiB"


def unmanaged_pause_warning(address: str, limits: MemoryLimits, process: int,
                            managed: int) -> str | None:
    """The warning for a worker pausing at ``process`` bytes while ``managed`` bytes of
    values are in memory, or None: only when the memory it cannot spill (unmanaged: the
    process's memory less its values) is past the pause threshold on its own, so that no
    spilling can ever resume it and the user would otherwise see tasks wait forever."""
    if limits.pause is None:
        return None
    unmanaged = max(0, process - managed)
    if unmanaged < limits.pause:
        return None
    return (f"Unmanaged memory use is high: worker {address} is paused with {_mb(unmanaged)} "
            f"of memory it cannot spill ({_mb(managed)} of values in memory; pause threshold "
            f"{_mb(limits.pause)}, memory limit {_mb(limits.limit)}). This is the process's "
            "own memory: imported libraries, objects your tasks keep (a leak), or freed memory "
            "the allocator has not given back to the OS; see " + _MEMORY_NOT_RELEASED + ". "
            "Its tasks wait until that memory is freed: give the workers a larger "
            "memory_limit, or free what the tasks keep.")


def _trim_and_sample(process: psutil.Process, store: SpillBuffer, rss: int) -> tuple[int, list[Any]]:
    """Give freed heap memory back (glibc), measure again, and feed the policy: the
    process's memory figure and the policy's orders (after it spilled what it must)."""
    if trim_heap():
        try:
            rss = process.memory_info().rss
        except psutil.Error as exc:
            logger.warning("cannot measure memory after trimming the heap: %s", exc)
    return rss, store.sample(rss)


class MemoryMonitorMixin(WorkerBase):
    """The data store and the worker's reactions to its memory use."""

    _unmanaged_warned_at = -math.inf  # monotonic time of the last unmanaged-memory warning

    def _data_store(self) -> MutableMapping[Any, Any]:
        """A plain dict without a memory limit (nothing to pay per task); a spilling
        store under one."""
        if not self.memory_limit:
            return {}
        target, spill, pause, transfer = self._memory_fractions
        directory = self._spill_parent
        if None in (target, spill, pause, transfer) or directory is None:
            import dask.config

            from shoal.worker._memory_settings import MEMORY_FRACTIONS

            def config(name: str) -> Any:
                return dask.config.get(f"distributed.worker.memory.{name}",
                                       MEMORY_FRACTIONS[name])

            target = config("target") if target is None else target
            spill = config("spill") if spill is None else spill
            pause = config("pause") if pause is None else pause
            transfer = config("transfer") if transfer is None else transfer
            if directory is None:
                directory = dask.config.get("temporary-directory", None) or ""
        self._spill_parent = directory
        self._memory_fractions = (target, spill, pause, transfer)
        self._transfer_budget = int(float(transfer) * self.memory_limit) if transfer else 0
        max_spill = self._max_spill_setting
        if max_spill == _NOT_GIVEN:
            import dask.config

            max_spill = dask.config.get("distributed.worker.memory.max-spill", False)
        limits = MemoryLimits.from_fractions(self.memory_limit, target, spill, pause,
                                             max_spill_bytes(max_spill))
        setting = self._spill_compression_setting
        if setting == _NOT_GIVEN:
            import dask.config

            setting = dask.config.get("distributed.worker.memory.spill-compression", "auto")
        if self._monitor_interval is None:  # no nanny said: read dask's config
            from shoal.worker._memory_settings import configured_monitor_interval

            self._monitor_interval = configured_monitor_interval()
        compression = spill_compression(setting)  # raises for "lz4" without the package
        # as dask: under local_directory
        return SpillBuffer(self.local_directory, limits, compression)

    async def _memory_monitor(self, store: SpillBuffer) -> None:
        """Sample process memory every ``_monitor_interval`` seconds and carry out
        the policy: spill (in the serializing thread: disk writes stay off the loop),
        pause, resume. Ends with its session (cancelled) or when the worker closes."""
        loop = asyncio.get_running_loop()
        spill_at = store.policy.limits.spill
        while not self._closed.is_set():
            # ends: the worker closes (the loop's test), or the session cancels this
            await asyncio.sleep(self._monitor_interval or 0.1)
            try:
                rss = self._process.memory_info().rss
            except psutil.Error as exc:
                logger.warning("worker %s cannot measure its memory: %s", self.address, exc)
                continue
            if spill_at is not None and rss > spill_at:
                # Freed heap memory goes back first; spill only for what is really held.
                rss, commands = await loop.run_in_executor(
                    self._serializing_pool(), _trim_and_sample, self._process, store, rss)
            else:
                commands = store.sample(rss)
            if store is not self.data:
                return  # the session ended meanwhile
            for cmd in commands:
                if type(cmd) is Pause:
                    self._pause(rss)
                elif type(cmd) is Resume:
                    self._resume(rss)

    async def say_killed_for_memory(self, fraction: float) -> None:
        """Its nanny is killing this process for memory (SIGUSR1, SIGKILL after a short
        grace): tell the scheduler why, so that a task failing with KilledWorker says so.
        Only queues and hands the message to the transport; the caller exits next."""
        try:
            rss = psutil.Process().memory_info().rss
        except psutil.Error as exc:
            logger.warning("cannot measure memory before being killed for it: %s", exc)
            rss = 0
        logger.warning("worker %s is past %.0f%% of its memory limit (%d of %d bytes); its "
                       "nanny is killing it", self.address, 100 * fraction, rss,
                       self.memory_limit)
        conn = self._scheduler
        if conn is not None and not conn.closed:
            conn.send(MemoryTerminated(rss, self.memory_limit, fraction))
            await conn.drain()
            conn.close()  # writes what is queued; the kernel delivers it after the exit

    def _pause(self, rss: int) -> None:
        if self.paused:
            return
        self.paused = True
        logger.warning("worker %s is at %.0f%% of its memory limit (%d bytes); pausing: no new "
                       "tasks nor fetches until it falls back below its pause threshold",
                       self.address, 100 * rss / self.memory_limit, rss)
        self._warn_if_unmanaged(rss)
        if self._executor is not None:
            self._executor.pause()
        if self._scheduler is not None and not self._scheduler.closed:
            self._scheduler.send(MemoryPaused(True))

    def _warn_if_unmanaged(self, rss: int) -> None:
        store = self.data
        if not isinstance(store, SpillBuffer):
            return
        now = time.monotonic()
        if now - self._unmanaged_warned_at < UNMANAGED_WARNING_INTERVAL:
            return
        text = unmanaged_pause_warning(self.address, store.policy.limits, rss,
                                       store.policy.managed)
        if text is not None:
            self._unmanaged_warned_at = now
            logger.warning("%s", text)

    def _resume(self, rss: int) -> None:
        if not self.paused:
            return
        self.paused = False
        logger.warning("worker %s is at %.0f%% of its memory limit; resuming",
                       self.address, 100 * rss / self.memory_limit)
        if self._executor is not None:
            self._executor.resume()
        fetches, self._deferred_fetches = self._deferred_fetches, []
        for cmd in fetches:
            self._queue_fetch(cmd)
        if self._scheduler is not None and not self._scheduler.closed:
            self._scheduler.send(MemoryPaused(False))
