"""Semaphores (and Locks, which are semaphores of one lease): who holds which lease, who
waits, in arrival order.

A lease belongs to the holder connection that acquired it: it returns when the holder
releases it, when the holder's connection closes, or when the holder stopped refreshing it
for ``lease_timeout`` seconds (dask's ``distributed.scheduler.locks.lease-timeout``).
Waiters are served first come, first served; a waiter whose deadline passes gets False.
Lease expiry is checked on every :class:`Tick` (the shell ticks every
``lease-validation-interval``), not with a wake-up of its own.

A semaphore nobody holds or waits for is forgotten: every acquire carries its max_leases
and lease timeout, so nothing is lost but the "Inconsistent max leases" check against a
semaphore of the same name that is idle. A Lock is never closed (dask's Lock has no
``close``), and a long-running cluster would otherwise keep one entry per Lock name ever
used, and look at each on every tick and whenever a client leaves.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from shoal._machine import Command
from shoal.scheduler.coordination._events import (
    Fail,
    Reply,
    SemaphoreAcquire,
    SemaphoreClose,
    SemaphoreRefresh,
    SemaphoreRelease,
    SemaphoreValue,
    WakeAt,
    Warn,
)


@dataclass(slots=True)
class Lease:
    holder: str
    seen: float  # when it was granted or last refreshed


@dataclass(slots=True)
class Waiter:
    holder: str
    rid: int
    lease: str
    deadline: float | None


@dataclass(slots=True)
class Semaphore:
    max_leases: int
    lease_timeout: float | None
    leases: dict[str, Lease] = field(default_factory=dict)
    waiters: deque[Waiter] = field(default_factory=deque)


class Semaphores:
    def __init__(self, out: list[Command]) -> None:
        self.out = out
        self.semaphores: dict[str, Semaphore] = {}

    def acquire(self, ev: SemaphoreAcquire) -> None:
        sem = self.semaphores.get(ev.name)
        if sem is None:
            sem = self.semaphores[ev.name] = Semaphore(ev.max_leases, ev.lease_timeout)
        elif sem.max_leases != ev.max_leases:
            self.out.append(Fail(
                ev.holder, ev.rid, "ValueError",
                f"Inconsistent max leases: {ev.max_leases}, expected: {sem.max_leases} "
                f"(semaphore {ev.name!r} already exists with max_leases={sem.max_leases})",
            ))
            return
        lease = sem.leases.get(ev.lease)
        if lease is not None:  # the same request again: idempotent
            lease.seen = ev.now
            self.out.append(Reply(ev.holder, ev.rid, True))
        elif len(sem.leases) < sem.max_leases and not sem.waiters:
            sem.leases[ev.lease] = Lease(ev.holder, ev.now)
            self.out.append(Reply(ev.holder, ev.rid, True))
        elif ev.deadline is not None and ev.deadline <= ev.now:
            self.out.append(Reply(ev.holder, ev.rid, False))
        else:
            sem.waiters.append(Waiter(ev.holder, ev.rid, ev.lease, ev.deadline))
            if ev.deadline is not None:
                self.out.append(WakeAt(ev.deadline))

    def release(self, ev: SemaphoreRelease) -> None:
        sem = self.semaphores.get(ev.name)
        if sem is None or ev.lease not in sem.leases:
            self.out.append(Warn(
                f"{ev.holder} released a lease of Lock or Semaphore {ev.name!r} that it does "
                "not hold (it may have timed out; see distributed.scheduler.locks.lease-timeout)"
            ))
            return
        del sem.leases[ev.lease]
        self._grant(sem, ev.now)
        self._forget_if_idle(ev.name, sem)

    def refresh(self, ev: SemaphoreRefresh) -> None:
        sem = self.semaphores.get(ev.name)
        for lease_id in ev.leases:
            lease = sem.leases.get(lease_id) if sem is not None else None
            if lease is None:
                self.out.append(Warn(
                    f"{ev.holder} refreshed lease {lease_id} of {ev.name!r}, which had already "
                    "timed out: the semaphore may have been overbooked (was the holder's "
                    "thread holding the GIL for longer than the lease-timeout?)"
                ))
            else:
                lease.seen = ev.now

    def value(self, ev: SemaphoreValue) -> None:
        sem = self.semaphores.get(ev.name)
        self.out.append(Reply(ev.holder, ev.rid, len(sem.leases) if sem is not None else 0))

    def close(self, ev: SemaphoreClose) -> None:
        sem = self.semaphores.pop(ev.name, None)
        if sem is not None:
            if sem.leases:
                self.out.append(Warn(f"closing semaphore {ev.name!r} with leases still held"))
            for w in sem.waiters:
                self.out.append(Fail(w.holder, w.rid, "RuntimeError",
                                     f"semaphore {ev.name!r} was closed while waiting"))
        self.out.append(Reply(ev.holder, ev.rid, None))

    def withdraw(self, holder: str, rid: int) -> bool:
        for name, sem in self.semaphores.items():
            for w in sem.waiters:
                if w.rid == rid and w.holder == holder:
                    sem.waiters.remove(w)
                    self._forget_if_idle(name, sem)
                    return True
        return False

    def holder_left(self, holder: str, now: float) -> None:
        for name, sem in list(self.semaphores.items()):
            gone = [lid for lid, lease in sem.leases.items() if lease.holder == holder]
            for lid in gone:
                del sem.leases[lid]
            if any(w.holder == holder for w in sem.waiters):
                sem.waiters = deque(w for w in sem.waiters if w.holder != holder)
            self._grant(sem, now)
            self._forget_if_idle(name, sem)

    def tick(self, now: float) -> None:
        for name, sem in list(self.semaphores.items()):
            if sem.lease_timeout is not None:
                stale = [lid for lid, lease in sem.leases.items()
                         if now - lease.seen > sem.lease_timeout]
                for lid in stale:
                    holder = sem.leases.pop(lid).holder
                    self.out.append(Warn(
                        f"lease {lid} of {name!r} held by {holder} timed out: not refreshed "
                        f"for {sem.lease_timeout} s (distributed.scheduler.locks.lease-timeout)"
                    ))
            if sem.waiters and any(w.deadline is not None and w.deadline <= now
                                   for w in sem.waiters):
                keep: deque[Waiter] = deque()
                for w in sem.waiters:
                    if w.deadline is not None and w.deadline <= now:
                        self.out.append(Reply(w.holder, w.rid, False))
                    else:
                        keep.append(w)
                sem.waiters = keep
            self._grant(sem, now)
            self._forget_if_idle(name, sem)

    def _forget_if_idle(self, name: str, sem: Semaphore) -> None:
        if not sem.leases and not sem.waiters:
            del self.semaphores[name]

    def _grant(self, sem: Semaphore, now: float) -> None:
        """Give free leases to the waiters at the front."""
        while sem.waiters and len(sem.leases) < sem.max_leases:
            w = sem.waiters.popleft()
            sem.leases[w.lease] = Lease(w.holder, now)
            self.out.append(Reply(w.holder, w.rid, True))

    def validate(self) -> None:
        for name, sem in self.semaphores.items():
            assert len(sem.leases) <= sem.max_leases, (name, sem.leases)
            assert not sem.waiters or len(sem.leases) == sem.max_leases, (name, sem)
            assert not ({w.lease for w in sem.waiters} & set(sem.leases)), name
