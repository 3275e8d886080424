"""Which pickled functions the scheduler's tasks still use, as a small pure machine.

Owns: a reference count per function id (fid) over the tasks that carry it, and when an
unused function may be forgotten. A function no task has used for ``IDLE_TICKS`` ticks
is forgotten (the shell drops its blob and tells the workers and clients that hold it);
the wait keeps a submit-release loop of one function from sending it again every time.
Must not know: blobs, sockets, clocks (ticks arrive as calls).
"""

from __future__ import annotations

from collections.abc import Iterable

IDLE_TICKS = 2


class FunctionRefs:
    """Reference counts of fids by tasks, and the fids idle long enough to forget."""

    def __init__(self, idle_ticks: int = IDLE_TICKS) -> None:
        self.refs: dict[str, int] = {}
        self.idle: dict[str, int] = {}  # unused fid -> ticks it has been unused
        self.idle_ticks = idle_ticks

    def use(self, fids: Iterable[str], tasks: int = 1) -> None:
        """``tasks`` tasks carrying ``fids`` arrived."""
        refs = self.refs
        for fid in fids:
            refs[fid] = refs.get(fid, 0) + tasks
            if self.idle:
                self.idle.pop(fid, None)

    def release(self, fids: Iterable[str]) -> None:
        """A task carrying ``fids`` was forgotten."""
        refs = self.refs
        for fid in fids:
            n = refs.get(fid, 0) - 1
            if n > 0:
                refs[fid] = n
            else:
                refs.pop(fid, None)
                self.idle[fid] = 0

    def tick(self) -> list[str]:
        """Time passed: return the fids unused for ``idle_ticks`` ticks (now forgotten)."""
        expired = [fid for fid, n in self.idle.items() if n + 1 >= self.idle_ticks]
        for fid in expired:
            del self.idle[fid]
        for fid in self.idle:
            self.idle[fid] += 1
        return expired

    def validate(self) -> None:
        assert all(n > 0 for n in self.refs.values()), self.refs
        assert not set(self.refs) & set(self.idle), set(self.refs) & set(self.idle)
