"""The Active Memory Manager's shell: dask's ``distributed.scheduler.active-memory-manager``
config, the timer that runs a pass every ``interval``, ``client.amm``'s requests, and the
AMM's orders carried out as ``ReplicasDropped`` events of the task state.

Owns: when passes run, and yielding the loop between a pass's steps. Must not know which
copies to drop (``_amm``, pure).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from shoal.scheduler import _amm as amm
from shoal.scheduler._events import ReplicasDropped, ReplicasWanted
from shoal.scheduler._tasks import Key

if TYPE_CHECKING:
    from shoal.comm import Connection
    from shoal.scheduler._server import Scheduler

logger = logging.getLogger("shoal.scheduler")

_CONFIG = "distributed.scheduler.active-memory-manager"


class AmmSettings:
    """The config, read once (by the scheduler's constructor).

    Raises:
        ValueError: an interval that is not a positive duration, or a policy shoal lacks.
    """

    def __init__(self) -> None:
        import dask
        from dask.utils import parse_timedelta

        self.start = bool(dask.config.get(f"{_CONFIG}.start", True))
        self.interval = float(parse_timedelta(dask.config.get(f"{_CONFIG}.interval", "2s"),
                                              default="s"))
        if not self.interval > 0:
            raise ValueError(f"{_CONFIG}.interval must be a positive duration (such as 2s); "
                             f"got {dask.config.get(f'{_CONFIG}.interval')!r}")
        self.measure = str(dask.config.get(f"{_CONFIG}.measure", "optimistic"))
        self.policies = _policies(dask.config.get(
            f"{_CONFIG}.policies",
            [{"class": "distributed.active_memory_manager.ReduceReplicas"}]))


def _policies(entries: Any) -> list[str]:
    """The policy names of the config's ``policies`` list (``{"class": ...}`` each).

    Raises:
        ValueError: a policy shoal does not have (dask's policies run against dask's own
            scheduler objects; shoal has ReduceReplicas only).
    """
    out = []
    for entry in entries or ():
        cls = entry.get("class") if isinstance(entry, dict) else entry
        name = cls if isinstance(cls, str) else getattr(cls, "__name__", repr(cls))
        known = amm.POLICY_NAMES.get(name)
        if known is None:
            raise ValueError(f"{_CONFIG}.policies names {name!r}; shoal's active memory manager "
                             f"has only ReduceReplicas "
                             f"(class: distributed.active_memory_manager.ReduceReplicas)")
        out.append(known)
    return out


class AmmShell:
    """Runs the AMM for one scheduler (``Scheduler.amm``)."""

    def __init__(self, scheduler: Scheduler, settings: AmmSettings) -> None:
        self.scheduler = scheduler
        self.settings = settings
        self.machine = amm.ActiveMemoryManager(settings.policies, settings.measure)
        self._timer: asyncio.Task[None] | None = None
        self._pass: asyncio.Future[dict[str, int]] | None = None  # the pass under way

    # --- client.amm ------------------------------------------------------------------------

    def start(self) -> None:
        """Run a pass every ``interval`` seconds until :meth:`stop` or the scheduler closes."""
        if self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(self._every())

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def running(self) -> bool:
        return self._timer is not None and not self._timer.done()

    async def run_once(self) -> dict[str, int]:
        """One pass now (or the end of the one under way): ``{"keys": n, "dropped": m}``."""
        done = self._pass
        if done is None:
            done = self._pass = asyncio.get_running_loop().create_future()
            self._go(amm.PassAsked())  # a small pass ends (and sets ``done``) right here
        return await asyncio.shield(done)  # ends: the pass's last step, a few loop steps away

    async def close(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            await asyncio.gather(timer, return_exceptions=True)

    # --- what other parts of the shell tell it ---------------------------------------------

    def wanted(self, keys: list[Key], n: int) -> None:
        """The user asked for ``n`` copies of ``keys`` (replicate, broadcast scatter)."""
        self.scheduler._apply([ReplicasWanted(keys, n)])

    # --- passes ------------------------------------------------------------------------------

    async def _every(self) -> None:
        while True:  # ends: stop() or close() cancels this task
            await asyncio.sleep(self.settings.interval)
            if self._pass is not None:
                continue  # the last pass has not ended yet (a very big one): no second
            try:
                await self.run_once()
            except Exception:  # a shoal bug; logged, and the next interval tries again
                logger.exception("active memory manager pass failed")
                self._pass = None

    def _view(self) -> amm.View:
        state = self.scheduler.state
        return amm.View(state.replicated_tasks, state.workers, state.replicas_wanted,
                        frozenset(self.scheduler.retiring))

    def _go(self, *events: amm.Event) -> None:
        try:
            commands = self.machine.handle(self._view(), *events)
        except Exception as exc:  # a shoal bug: the pass ends, the caller hears of it
            logger.exception("active memory manager failed")
            self.machine.abandon()
            self._finish(exc)
            return
        drops = []
        for cmd in commands:
            if isinstance(cmd, amm.DropReplicas):
                drops.append(ReplicasDropped(cmd.worker, cmd.keys))
            elif isinstance(cmd, amm.ContinuePass):
                # The next step on a later loop step, after what waits (messages, ticks).
                asyncio.get_running_loop().call_soon(self._go, amm.StepAsked())
            elif isinstance(cmd, amm.PassDone):
                if cmd.dropped:
                    logger.debug("active memory manager: dropped %d copies of %d keys",
                                 cmd.dropped, cmd.keys)
                self._finish({"keys": cmd.keys, "dropped": cmd.dropped})
        if drops:
            self.scheduler._apply(drops)

    def _finish(self, outcome: dict[str, int] | BaseException) -> None:
        done, self._pass = self._pass, None
        if done is not None and not done.done():
            if isinstance(outcome, BaseException):
                done.set_exception(outcome)
            else:
                done.set_result(outcome)


async def answer(scheduler: Scheduler, conn: Connection, method: str) -> Any:
    """``client.amm``'s request: ``start``, ``stop``, ``running`` or ``run_once``."""
    shell = scheduler.amm
    if method == "start":
        shell.start()
        return None
    if method == "stop":
        shell.stop()
        return None
    if method == "running":
        return shell.running
    if method == "run_once":
        await shell.run_once()
        return None
    raise ValueError(f"client.amm has no method {method!r}: start, stop, running, run_once")


OPS = {"amm": answer}
