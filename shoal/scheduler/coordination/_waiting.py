"""Lines of waiters kept by name (Event waiters, Variable getters): taking one out."""

from __future__ import annotations

from typing import Protocol, TypeVar


class Waiting(Protocol):
    holder: str
    rid: int


W = TypeVar("W", bound=Waiting)


def take_out(lines: dict[str, list[W]], holder: str, rid: int) -> bool:
    """Remove request ``rid`` of ``holder`` from the line it waits in (a line left empty
    goes); whether it was there."""
    for name, line in lines.items():
        for w in line:
            if w.rid == rid and w.holder == holder:
                line.remove(w)
                if not line:
                    del lines[name]
                return True
    return False
