"""Where copies of data should go: the decisions behind ``client.replicate`` and
``client.rebalance``, as pure functions of who holds what (no state, no I/O).

The scheduler shell asks the chosen workers to fetch the copies from their holders and, once
they confirm, drops the copies that are no longer wanted (``ReplicasAdded`` /
``ReplicasDropped`` events of the task state).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Key = Any

DEFAULT_TOLERANCE = 0.1  # dask's distributed.worker.memory.rebalance.sender-recipient-gap


@dataclass
class Plan:
    """Copies to make (``key -> [target workers]``, each fetched from one of ``sources``)
    and copies to drop afterwards (``worker -> [keys]``)."""

    copies: dict[Key, list[str]] = field(default_factory=dict)
    drops: dict[str, list[Key]] = field(default_factory=dict)

    def by_target(self) -> dict[str, list[Key]]:
        out: dict[str, list[Key]] = {}
        for key, targets in self.copies.items():
            for w in targets:
                out.setdefault(w, []).append(key)
        return out


def plan_replicate(holders: Mapping[Key, Iterable[str]], nbytes: Mapping[Key, int],
                   load: Mapping[str, int], workers: Iterable[str], n: int | None) -> Plan:
    """Make each key held by exactly ``n`` of ``workers`` (all of them when None): copies
    go to the workers holding the fewest bytes, excess copies are dropped from those
    holding the most (copies outside ``workers`` are left alone; a key keeps at least one
    copy). Deterministic: ties are broken by address.

    Args:
        holders: key -> workers holding it now.
        nbytes: key -> size; load: worker -> bytes it holds now.

    Raises:
        ValueError: ``n`` below 1, or no workers.
    """
    pool = sorted(set(workers))
    if not pool:
        raise ValueError("replicate needs at least one worker to copy to")
    want = len(pool) if n is None else min(n, len(pool))
    if want < 1:
        raise ValueError(f"replicate needs n >= 1 (the number of copies), got {n!r}")
    weight = {w: int(load.get(w, 0)) for w in pool}
    plan = Plan()
    for key in sorted(holders, key=repr):
        have = set(holders[key])
        inside = [w for w in pool if w in have]
        size = max(int(nbytes.get(key, 0)), 0)
        if len(inside) < want:
            free = sorted((w for w in pool if w not in have), key=lambda w: (weight[w], w))
            chosen = free[: want - len(inside)]
            if chosen:
                plan.copies[key] = chosen
            for w in chosen:
                weight[w] += size
        elif len(inside) > want:
            extra = len(inside) - want
            if extra >= len(have):  # keep at least one copy anywhere
                extra = len(have) - 1
            for w in sorted(inside, key=lambda w: (-weight[w], w))[:extra]:
                plan.drops.setdefault(w, []).append(key)
                weight[w] -= size
    return plan


def plan_rebalance(held: Mapping[str, Mapping[Key, int]], movable: set[Key] | None = None,
                   tolerance: float = DEFAULT_TOLERANCE) -> Plan:
    """Move keys from the workers holding the most bytes to those holding the fewest until
    the most and least loaded are within ``tolerance`` x the mean of each other, or no single
    move between them narrows the gap (each key moves at most once, so the plan ends).

    Args:
        held: worker -> {key: nbytes} it holds (only the workers taking part).
        movable: the keys that may move (all when None).
        tolerance: the accepted gap, as a fraction of the mean bytes held.
    """
    load = {w: sum(max(int(n), 0) for n in keys.values()) for w, keys in held.items()}
    plan = Plan()
    if len(load) < 2:
        return plan
    where: dict[Key, set[str]] = {}
    for w, keys in held.items():
        for k in keys:
            where.setdefault(k, set()).add(w)
    mean = sum(load.values()) / len(load)
    moved: set[Key] = set()
    while True:
        order = sorted(load, key=lambda w: (load[w], w))
        low, high = order[0], order[-1]
        gap = load[high] - load[low]
        if gap <= tolerance * mean or gap <= 0:
            break
        best: tuple[float, Any, Key, int] | None = None
        for key, size in held[high].items():
            size = max(int(size), 0)
            if key in moved or low in where[key] or (movable is not None and key not in movable):
                continue
            if 0 < size < gap:  # moving it narrows the gap; best: closest to half of it
                score = abs(gap / 2 - size)
                if best is None or (score, repr(key)) < (best[0], repr(best[2])):
                    best = (score, None, key, size)
        if best is None:
            break
        _, _, key, size = best
        moved.add(key)
        plan.copies.setdefault(key, []).append(low)
        plan.drops.setdefault(high, []).append(key)
        where[key] = (where[key] - {high}) | {low}
        load[high] -= size
        load[low] += size
    return plan
