"""Per-task messages as one columnar message, and back: one worker's computes of a loop
step (:class:`Computes`), one worker's results (:class:`TasksDone`), one client's results
(:class:`KeysDone`).

Owns: building the columns from rows (anything with the single message's attributes) and
reading a batch back as single messages (for code that takes one at a time).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

from shoal.protocol._messages import Compute, Computes, KeysDone, TaskDone, TasksDone

_key_done_columns = operator.attrgetter("key", "nbytes", "typename", "inline", "pickled_type")


def keys_done(reports: Sequence[Any]) -> KeysDone:
    """``reports`` (in order; anything with :class:`KeyDone`'s attributes, such as the
    scheduler's ``ReportDone``) as one :class:`KeysDone`."""
    return KeysDone(*map(list, zip(*map(_key_done_columns, reports), strict=True)))


_compute_columns = operator.attrgetter(
    "key", "payload", "deps", "priority", "send_inline", "run", "drop"
)


def computes(rows: Sequence[Any], functions: dict[str, bytes]) -> Computes:
    """``rows`` (in order; anything with :class:`Compute`'s attributes, such as the
    scheduler's ``SendCompute``) as one :class:`Computes` carrying ``functions``."""
    keys, payloads, deps, priorities, inline, runs, drops = map(
        list, zip(*map(_compute_columns, rows), strict=True))
    return Computes(keys, payloads, deps, functions, priorities, inline, runs, drops)


def compute_rows(msg: Computes) -> list[Compute]:
    """``msg``'s rows as the :class:`Compute` messages they stand for (``prefix`` empty, the
    functions on the first): for code that takes one at a time (tests, simulations)."""
    return [Compute(key, payload, deps, msg.functions if i == 0 else {}, priority, inline, "",
                    run, tuple(drop))
            for i, (key, payload, deps, priority, inline, run, drop) in enumerate(zip(
                msg.keys, msg.payloads, msg.deps, msg.priorities, msg.send_inline, msg.runs,
                msg.drops, strict=True))]


_done_columns = operator.attrgetter(
    "key", "nbytes", "typename", "start", "stop", "thread", "inline", "run", "dropped",
    "pickled_type",
)


def tasks_done(reports: list[TaskDone]) -> TasksDone:
    """``reports`` (in order) as one :class:`TasksDone`."""
    return TasksDone(*map(list, zip(*map(_done_columns, reports), strict=True)))
