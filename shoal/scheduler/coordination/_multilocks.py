"""MultiLocks: several named locks taken all at once, without deadlock, in arrival order.

Each lock name has a line of requests; the request at the front holds that lock. A request
joins the line of every lock it asks for in one step, so the lines agree on who came first:
the oldest request is at the front of all its lines and is never waiting on a younger one,
which is why no set of requests can deadlock. A request is granted once it is at the front
of ``num_locks`` of its lines; it then leaves the lines where it is not at the front (it
needs them no more). This namespace is separate from Lock/Semaphore names, as in dask.
"""

from __future__ import annotations

from dataclasses import dataclass

from shoal._machine import Command
from shoal.scheduler.coordination._events import (
    Fail,
    MultiLockAcquire,
    MultiLockRelease,
    Reply,
    WakeAt,
    Warn,
)


@dataclass(slots=True)
class Request:
    holder: str
    rid: int
    names: list[str]  # the lines it stands in
    num_locks: int
    needed: int  # how many more fronts it needs; 0 = granted
    deadline: float | None


class MultiLocks:
    def __init__(self, out: list[Command]) -> None:
        self.out = out
        self.lines: dict[str, list[str]] = {}  # lock name -> lock ids, front first
        self.requests: dict[str, Request] = {}  # lock id -> request

    def acquire(self, ev: MultiLockAcquire) -> None:
        names = list(dict.fromkeys(ev.names))
        if ev.lock_id in self.requests:
            self.out.append(Fail(ev.holder, ev.rid, "RuntimeError",
                                 "this MultiLock is already acquired or waiting; release it first"))
            return
        if not 0 < ev.num_locks <= len(names):
            self.out.append(Fail(ev.holder, ev.rid, "ValueError",
                                 f"num_locks must be between 1 and {len(names)}, got {ev.num_locks}"))
            return
        # The least contended locks first, so that a request for some of them takes free ones.
        names.sort(key=lambda n: len(self.lines.get(n, ())))
        req = Request(ev.holder, ev.rid, [], ev.num_locks, ev.num_locks, ev.deadline)
        self.requests[ev.lock_id] = req
        for name in names:
            line = self.lines.setdefault(name, [])
            line.append(ev.lock_id)
            req.names.append(name)
            if len(line) == 1:
                req.needed -= 1
                if req.needed == 0:
                    break
        if req.needed == 0:
            self._granted(ev.lock_id, req)
        elif ev.deadline is not None and ev.deadline <= ev.now:
            self._leave(ev.lock_id)
            self.out.append(Reply(ev.holder, ev.rid, False))
        elif ev.deadline is not None:
            self.out.append(WakeAt(ev.deadline))

    def release(self, ev: MultiLockRelease) -> None:
        req = self.requests.get(ev.lock_id)
        if req is None or req.needed:
            self.out.append(Warn(f"{ev.holder} released MultiLock {ev.lock_id}, "
                                 "which does not hold its locks"))
            return
        self._leave(ev.lock_id)

    def withdraw(self, holder: str, rid: int) -> bool:
        """Request ``rid`` of ``holder`` leaves its lines: True if it was waiting (to be
        answered cancelled). Granted already, its caller stopped waiting before it heard:
        the locks are released here, in order with that MultiLock's next acquire (same
        lock id), which a release sent once the grant reached the client could overtake."""
        for lock_id, req in self.requests.items():
            if req.rid == rid and req.holder == holder:
                self._leave(lock_id)
                return req.needed > 0
        return False

    def holder_left(self, holder: str) -> None:
        for lock_id in [i for i, r in self.requests.items() if r.holder == holder]:
            if lock_id in self.requests:
                self._leave(lock_id)

    def tick(self, now: float) -> None:
        late = [i for i, r in self.requests.items()
                if r.needed and r.deadline is not None and r.deadline <= now]
        for lock_id in late:
            req = self.requests.get(lock_id)
            if req is not None and req.needed:  # not granted by an earlier one leaving
                self._leave(lock_id)
                self.out.append(Reply(req.holder, req.rid, False))

    def _leave(self, lock_id: str) -> None:
        """Take ``lock_id`` out of every line; whoever reaches a front moves closer."""
        req = self.requests.pop(lock_id)
        for name in req.names:
            line = self.lines[name]
            was_front = line[0] == lock_id
            line.remove(lock_id)
            if not line:
                del self.lines[name]
            elif was_front:
                self._reached_front(line[0])

    def _reached_front(self, lock_id: str) -> None:
        req = self.requests[lock_id]
        if req.needed == 0:
            return
        req.needed -= 1
        if req.needed == 0:
            self._granted(lock_id, req)

    def _granted(self, lock_id: str, req: Request) -> None:
        """Step out of the lines it does not lead (it needs them no more); answer True."""
        for name in [n for n in req.names if self.lines[n][0] != lock_id]:
            req.names.remove(name)
            self.lines[name].remove(lock_id)
        self.out.append(Reply(req.holder, req.rid, True))

    def locked_by(self, lock_id: str) -> bool:
        req = self.requests.get(lock_id)
        return req is not None and req.needed == 0

    def validate(self) -> None:
        for name, line in self.lines.items():
            assert line, name
            assert len(set(line)) == len(line), (name, line)
            for lock_id in line:
                assert name in self.requests[lock_id].names, (name, lock_id)
        for lock_id, req in self.requests.items():
            fronts = sum(self.lines[n][0] == lock_id for n in req.names)
            assert fronts + req.needed == req.num_locks, (lock_id, req)
            if req.needed == 0:
                assert fronts == len(req.names), (lock_id, req)
            for name in req.names:
                assert lock_id in self.lines[name], (lock_id, name)
