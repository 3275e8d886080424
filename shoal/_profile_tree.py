"""Call trees of a statistical profiler, in dask.distributed's format, as plain data.

Owns: building a tree from sampled call stacks, merging trees, and picking the cycles of
a profile history between two times. Pure: no threads, clocks or frames of live threads
(stacks arrive as tuples), so everything here is tested without running anything.

A tree is what ``client.profile()`` returns (dask's ``distributed.profile`` format)::

    {"identifier": "root", "count": 12,
     "description": {"filename": "", "name": "", "line_number": 0, "line": ""},
     "children": {"inc;/path/to/mod.py;3": {"identifier": "inc;/path/to/mod.py;3",
                                            "count": 12, "description": {...},
                                            "children": {...}}}}

``count`` is how many samples passed through a node; a node's children are the functions
it was calling, keyed by ``"name;filename;first line of the function"``. The root's
children are the outermost frames of the sampled stacks.
"""

from __future__ import annotations

import linecache
from collections.abc import Callable, Iterable, Sequence
from typing import Any

# One sampled frame: (function name, filename, first line of the function, line running).
Frame = tuple[str, str, int, int]

ROOT = "root"


def new() -> dict[str, Any]:
    """An empty tree (dask's ``profile.create()``)."""
    return {"identifier": ROOT, "count": 0, "children": {},
            "description": {"filename": "", "name": "", "line_number": 0, "line": ""}}


def _source_line(filename: str, line: int) -> str:
    return linecache.getline(filename, line).strip()


def add_stack(tree: dict[str, Any], stack: Sequence[Frame],
              line_of: Callable[[str, int], str] = _source_line) -> None:
    """Count one sample of ``stack`` (outermost frame first) into ``tree``, in place.
    A node's description is that of the first sample that made it (its ``line`` read
    with ``line_of(filename, line)``)."""
    tree["count"] += 1
    node = tree
    for name, filename, first, line in stack:
        ident = f"{name};{filename};{first}"
        children = node["children"]
        child = children.get(ident)
        if child is None:
            child = children[ident] = {
                "identifier": ident, "count": 0, "children": {},
                "description": {"filename": filename, "name": name, "line_number": line,
                                "line": line_of(filename, line)},
            }
        child["count"] += 1
        node = child


def merge(*trees: dict[str, Any]) -> dict[str, Any]:
    """One tree counting every sample of ``trees`` (a new tree: the inputs are not
    changed, nor shared with the result). No tree gives an empty one."""
    out = new()
    for tree in trees:
        _merge_into(out, tree)
    return out


def _merge_into(into: dict[str, Any], tree: dict[str, Any]) -> None:
    into["count"] += tree["count"]
    children = into["children"]
    for ident, child in tree["children"].items():
        mine = children.get(ident)
        if mine is None:
            mine = children[ident] = {"identifier": ident, "count": 0, "children": {},
                                      "description": dict(child["description"])}
        _merge_into(mine, child)


def size(tree: dict[str, Any]) -> int:
    """How many nodes ``tree`` has, its root included."""
    return 1 + sum(size(c) for c in tree["children"].values())


def validate(tree: dict[str, Any]) -> None:
    """Raise AssertionError unless every node counts at least the samples of its
    children and carries its identifier and a description."""
    total = sum(c["count"] for c in tree["children"].values())
    assert tree["count"] >= total, (tree["identifier"], tree["count"], total)
    assert set(tree["description"]) == {"filename", "name", "line_number", "line"}, tree
    for ident, child in tree["children"].items():
        assert child["identifier"] == ident, (ident, child["identifier"])
        validate(child)


# --- a history of cycles ---------------------------------------------------------------------
# The profiler keeps one entry per cycle in which it sampled anything:
# (begin, end, {group: tree}), a group being a task's key prefix (or "" for a thread that
# runs no task). Idle cycles leave no entry.

Cycle = tuple[float, float, dict[str, dict[str, Any]]]


def select(cycles: Iterable[Cycle], start: float | None = None, stop: float | None = None,
           key: str | None = None) -> dict[str, Any]:
    """The merged tree of the ``cycles`` that overlap the times ``[start, stop]`` (either
    open when None), of the group ``key`` only when given, else of every group."""
    picked: list[dict[str, Any]] = []
    for begin, end, groups in cycles:
        if (start is not None and end < start) or (stop is not None and begin > stop):
            continue
        if key is None:
            picked.extend(groups.values())
        elif key in groups:
            picked.append(groups[key])
    return merge(*picked)


def cycles_size(groups: dict[str, dict[str, Any]]) -> int:
    """Nodes of one cycle's trees (what bounding the history counts)."""
    return sum(size(t) for t in groups.values())
