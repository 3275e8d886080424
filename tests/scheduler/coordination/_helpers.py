"""Small readers of the coordination machine's commands, for the tests."""

from __future__ import annotations

from typing import Any

from shoal.scheduler.coordination._events import DropKeys, Fail, HoldKeys, Reply, WakeAt


def replies(cmds: list[Any]) -> dict[tuple[str, int], Any]:
    """(holder, rid) -> value of every Reply."""
    return {(c.holder, c.rid): c.value for c in cmds if isinstance(c, Reply)}


def failures(cmds: list[Any]) -> dict[tuple[str, int], str]:
    """(holder, rid) -> exception kind of every Fail."""
    return {(c.holder, c.rid): c.kind for c in cmds if isinstance(c, Fail)}


def holds(cmds: list[Any]) -> list[tuple[str, str, list[Any]]]:
    """("hold"|"drop", owner, keys) in order."""
    out = []
    for c in cmds:
        if isinstance(c, HoldKeys):
            out.append(("hold", c.owner, list(c.keys)))
        elif isinstance(c, DropKeys):
            out.append(("drop", c.owner, list(c.keys)))
    return out


def wakes(cmds: list[Any]) -> list[float]:
    return [c.when for c in cmds if isinstance(c, WakeAt)]
