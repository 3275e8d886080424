"""Containers of dask collections given to ``Client.compute`` (``traverse=True``): the
collections found inside, and the container rebuilt around their results on a worker.

Owns: the walk over builtin containers (list, tuple, set, dict, namedtuples, dataclasses,
as ``dask.compute`` walks them) and the rebuild. It must not know about graphs: ``compute``
computes what it finds like any other collection (a Future: its key). dask's own path,
``dask.delayed(container)``, optimizes mixed kinds together and pairs their keys by
position in a sequence dask reorders (an array's result in a bag's place)."""

from __future__ import annotations

import dataclasses
from typing import Any

from dask.base import is_dask_collection
from dask.utils import is_namedtuple_instance


@dataclasses.dataclass(frozen=True)
class Slot:
    """Where the ``index``-th collection found was, in a container's template."""

    index: int


def unpack(obj: Any, found: list[Any], also: type = Slot) -> Any:
    """``obj``'s template: each dask collection inside it, and each instance of ``also``
    (appended to ``found``), replaced by a :class:`Slot`; other values kept."""
    if is_dask_collection(obj) or isinstance(obj, also):
        found.append(obj)
        return Slot(len(found) - 1)
    typ = type(obj)
    if typ in (list, tuple, set):
        return typ(unpack(x, found, also) for x in obj)
    if isinstance(obj, dict):
        return typ((k, unpack(v, found, also)) for k, v in obj.items())
    if is_namedtuple_instance(obj):
        return typ(*(unpack(x, found, also) for x in obj))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _replace(obj, lambda v: unpack(v, found, also))
    return obj


def repack(template: Any, results: list[Any]) -> Any:
    """The container of ``template`` with each :class:`Slot` replaced by its result."""
    if type(template) is Slot:
        return results[template.index]
    typ = type(template)
    if typ in (list, tuple, set):
        return typ(repack(x, results) for x in template)
    if isinstance(template, dict):
        return typ((k, repack(v, results)) for k, v in template.items())
    if is_namedtuple_instance(template):
        return typ(*(repack(x, results) for x in template))
    if dataclasses.is_dataclass(template) and not isinstance(template, type):
        return _replace(template, lambda v: repack(v, results))
    return template


def _replace(obj: Any, fill: Any) -> Any:
    """A copy of dataclass instance ``obj`` with ``fill`` applied to its init fields."""
    fields = {f.name: fill(getattr(obj, f.name)) for f in dataclasses.fields(obj)
              if f.init and hasattr(obj, f.name)}
    return dataclasses.replace(obj, **fields)
