"""Where the data of retiring workers goes: a pure decision over the scheduler's state.

Owns: which keys a retiring worker holds that are still needed and held nowhere else, and
which remaining worker receives each (the one with the most memory room, counting what
it is about to receive). Must not know: connections, or how the bytes travel (the shell,
``scheduler/_membership.py``, moves them and reports ``DataCopied``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shoal.scheduler._state import SchedulerState
from shoal.scheduler._tasks import WorkerState


@dataclass(frozen=True, slots=True)
class Move:
    """Copy ``key`` (``nbytes``) from ``source`` (retiring) to ``dest`` (staying)."""

    key: Any
    source: str
    dest: str
    nbytes: int


@dataclass(frozen=True, slots=True)
class RetirePlan:
    moves: list[Move]
    # Retiring workers holding needed data that no staying worker can take (none is
    # left): retiring them would lose it, so they stay (as dask does).
    stranded: frozenset[str]


def _load(ws: WorkerState, incoming: dict[str, int]) -> float:
    held = max(ws.nbytes, 0) + incoming.get(ws.address, 0)
    return held / ws.memory_limit if ws.memory_limit > 0 else float(held)


def plan_retirement(state: SchedulerState, leaving: Iterable[str]) -> RetirePlan:
    """The copies to make before the workers ``leaving`` can close without losing data
    that a client or a task still needs. Keys are moved biggest first, each to the staying
    worker with the lowest memory use (held plus planned bytes over its limit)."""
    out = set(leaving)
    staying = sorted(ws for a, ws in state.workers.items() if a not in out)
    moves: list[Move] = []
    stranded: set[str] = set()
    incoming: dict[str, int] = {}
    planned: set[Any] = set()
    for address in sorted(out):
        ws = state.workers.get(address)
        if ws is None:
            continue
        unique = [
            ts for ts in ws.has_what
            if state.needed(ts) and all(h.address in out for h in ts.who_has)
            and ts.key not in planned
        ]
        if unique and not staying:
            stranded.add(address)
            continue
        for ts in sorted(unique, key=lambda t: (-max(t.nbytes, 0), str(t.key))):
            dest = min(staying, key=lambda w: (_load(w, incoming), w.address))
            incoming[dest.address] = incoming.get(dest.address, 0) + max(ts.nbytes, 0)
            moves.append(Move(ts.key, address, dest.address, ts.nbytes))
            planned.add(ts.key)
    return RetirePlan(moves, frozenset(stranded))
