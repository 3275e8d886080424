"""The payloads of plain calls: ``Call`` (``client.submit``/``map`` with literal arguments)
and ``RefCall`` (a dask task whose arguments refer to other keys).

dask's ``Task`` handles futures inside arguments; a call without any is pickled and run
through this smaller object instead (a third of the pickling cost on the per-task path).
Both are called the same way by the worker: ``payload(values)``.
"""

from __future__ import annotations

import io
import pickle
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shoal.protocol._pickle_pieces import PLAIN as _PLAIN
from shoal.protocol._pickle_pieces import PLAIN_BYTES as _MAX_BYTES
from shoal.protocol._pickle_pieces import body as _body
from shoal.protocol._pickle_pieces import global_ref as _global
from shoal.protocol._pickle_pieces import short_str as _short_str

if TYPE_CHECKING:
    from shoal.protocol._serialize import FunctionCache, Serialized

_FRAME = pickle.FRAME[0]

_NO_DEPS: frozenset[Any] = frozenset()


class Call:
    __slots__ = ("args", "func", "kwargs")

    dependencies = _NO_DEPS

    def __init__(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs

    def __call__(self, values: Any = ()) -> Any:
        return self.func(*self.args, **self.kwargs)

    def __reduce__(self) -> Any:
        from shoal._p import C  # a short name: it is in every payload

        return C, (self.func, self.args, self.kwargs)

    def __repr__(self) -> str:
        name = getattr(self.func, "__name__", repr(self.func))
        return f"<Call {name}(...)>"


class RefCall:
    """The payload of a dask ``Task`` whose arguments are literals and references to other
    keys (``TaskRef``), nothing nested: the shape of nearly every task of a ``delayed``
    graph. It runs as the Task would (each reference replaced by its key's value) and
    pickles as a function, builtins and one small object, where a Task also pickles its
    dependency set, token, repr cache and a ``TaskRef`` object per input: about half the
    cost on the client, and less to load on the worker.

    ``args``/``kwargs`` hold None where ``refs`` says a key's value goes: ``refs`` is a
    tuple of ``(position or keyword, key)``.
    """

    __slots__ = ("_deps", "args", "func", "kwargs", "refs")

    def __init__(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                 refs: tuple[tuple[int | str, Any], ...],
                 dependencies: frozenset[Any] | None = None) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.refs = refs
        self._deps = dependencies  # the task's, known where it is made (not pickled)

    @property
    def dependencies(self) -> frozenset[Any]:
        if self._deps is None:
            self._deps = frozenset(key for _, key in self.refs)
        return self._deps

    def __call__(self, values: Any = ()) -> Any:
        if not self.refs:
            return self.func(*self.args, **self.kwargs)
        args = list(self.args)
        kwargs = dict(self.kwargs) if self.kwargs else self.kwargs
        for slot, key in self.refs:
            if isinstance(slot, int):
                args[slot] = values[key]
            else:
                kwargs[slot] = values[key]
        return self.func(*args, **kwargs)

    def __reduce__(self) -> Any:
        return RefCall, (self.func, self.args, self.kwargs, self.refs)

    def __repr__(self) -> str:
        name = getattr(self.func, "__name__", repr(self.func))
        return f"<RefCall {name}(...)>"


def call_with_container(func: Callable[..., Any], typ: type, *items: Any) -> Any:
    """``func(typ(items))``: a tree reduction's step, ``func`` over a list of its inputs,
    as a flat call (each input a reference of its own)."""
    return func(typ(items))


def _ref_call(func: Callable[..., Any], rest: tuple[Any, Any, Any]) -> RefCall:
    """Unpickling hook of :class:`RefCallPickles`' payloads."""
    return RefCall(func, *rest)


def _template_call(shared: tuple[Any, Any, Any], own: tuple[Any, Any]) -> RefCall:
    """Unpickling hook of :meth:`RefCallPickles.templated`'s payloads: the ``(func, args,
    kwargs)`` many calls share (sent once through the function table, unpickled once per
    process, its objects shared by the calls as dask's local schedulers share a graph's
    objects between its tasks: a task must not change its arguments in place), with this
    call's ``(refs, fills)`` (plain values by slot)."""
    func, args, kwargs = shared
    refs, fills = own
    if fills:
        args = list(args)
        kwargs = dict(kwargs)
        for slot, value in fills:
            if type(slot) is int:
                args[slot] = value
            else:
                kwargs[slot] = value
        args = tuple(args)
    return RefCall(func, args, kwargs, refs)


# --- RefCall payloads put together from constant pieces ------------------------------------

_TAIL = pickle.TUPLE2 + pickle.REDUCE + pickle.STOP
_TEMPLATE_HEAD = pickle.PROTO + b"\x05" + _global(_template_call)
_F_CALL = pickle.TUPLE1 + pickle.REDUCE  # after F's global and its argument: F(fid)
# Distinct shared parts one graph's payloads are cached for; past this, calls are
# pickled whole (a graph whose every task has its own argument objects gains nothing).
_MAX_TEMPLATES = 4096
_IS_PLAIN = _PLAIN.__contains__


def _plain_tuple(value: tuple[Any, ...]) -> bool:
    return all(map(_IS_PLAIN, map(type, value)))  # no Python frame per item


def _shared_slot(value: Any, where: int | str, fills: list[tuple[int | str, Any]]) -> Any:
    """What argument ``where`` puts in a templated call's cache key: 0 for a plain value
    (added to ``fills``, None left out: it is None in the shared part too), else the id of
    the object, which the shared part holds."""
    if value is None or type(value) in _PLAIN or (type(value) is tuple and _plain_tuple(value)):
        if value is not None:
            fills.append((where, value))
        return 0
    return id(value)


def _plain_key(key: Any) -> bool:
    return type(key) is str or (type(key) is tuple and _plain_tuple(key))


class RefCallPickles:
    """Payloads of :class:`RefCall` s of Python functions over plain values (numbers,
    strings, None) and keys, as the task pickler would give them, built from constant
    pieces around one ``pickle.dumps((args, kwargs, refs))``: no reducer call per task.

    The stream is ``_ref_call``, ``shoal._p.F(fid)``, the arguments' own pickle, TUPLE2,
    REDUCE. The constant pieces memoize nothing, so the memo indices of the arguments'
    pickle (which start at 0) are the stream's. A call this cannot take gives None: the
    caller pickles a RefCall with ``dumps_task`` instead.
    """

    def __init__(self, cache: FunctionCache) -> None:
        # Imported here: modules that _serialize imports may import this one.
        from shoal._p import F
        from shoal.protocol._serialize import Serialized

        self._cache = cache
        self._serialized = Serialized
        self._function = _global(F)
        self._heads: dict[int, tuple[Any, bytes, list[str]]] = {}
        self._templates: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self.shared_bytes = 0  # of the shared parts pickled (each sent once, see templated)
        self._refs_file = io.BytesIO()
        self._refs_pickler = pickle.Pickler(self._refs_file, protocol=5)
        self._refs_pickler.fast = True  # no memo: see templated
        from shoal.protocol._serialize import dumps_task
        from shoal.protocol._subgraph import _execute_subgraph, ordered_subgraph

        self._dumps_task = dumps_task
        self._subgraph = (_execute_subgraph, ordered_subgraph)

    def __call__(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                 refs: tuple[tuple[int | str, Any], ...]) -> tuple[Serialized, list[str]] | None:
        if type(func) is not types.FunctionType:
            return None
        plain = _PLAIN
        for a in args:
            if type(a) not in plain:
                return None
        if kwargs:
            for a in kwargs.values():
                if type(a) not in plain:
                    return None
        for _, key in refs:
            if type(key) is not str and not _plain_key(key):
                return None
        head = self._heads.get(id(func))
        if head is None or head[0] is not func:
            fid = self._cache.pickler().fid(func)  # checked once per batch
            head = self._heads[id(func)] = (func, pickle.PROTO + b"\x05" + _global(_ref_call)
                                            + self._function + _short_str(fid)
                                            + pickle.TUPLE1 + pickle.REDUCE, [fid])
        data = pickle.dumps((args, kwargs, refs), protocol=5)
        if len(data) > _MAX_BYTES:
            return None
        start = 2
        if data[2] == _FRAME:  # one frame, as the size limit ensures
            start = 11
        return self._serialized([head[1] + data[start:-1] + _TAIL]), head[2]

    def templated(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                  refs: tuple[tuple[int | str, Any], ...]) -> tuple[Serialized, list[str]] | None:
        """The payload of ``RefCall(func, args, kwargs, refs)`` for calls whose function and
        non-plain arguments are the same objects as an earlier call's: the tasks of one
        layer of a dask graph (one function, one shared subgraph or options object; keys,
        indices and shapes differ). That shared part is pickled once by the task pickler;
        each call adds the pickle of its references and plain values. None when the
        pieces do not fit (buffers, keys that are not plain, too many distinct shared
        parts): pickle the RefCall whole.

        The shared part (plain values and references as None in it) is pickled once and
        travels as an entry of the function table, like a function pickled by value: sent
        to the scheduler and to each worker once, unpickled once per process, held in the
        client's cache while this object lives (its rows are queued meanwhile). The stream
        is ``_template_call``, ``shoal._p.F(its id)``, the pickle of ``(refs, fills)`` (made
        without a memo: nothing before it in the stream memoizes), TUPLE2, REDUCE: a few
        dozen bytes a call whatever the shared part weighs (a fused array chunk's is ~2.7
        kB). The shared objects are kept alive in the cache, so their ids key it. A fused
        dask task's subgraph is ordered here, once (``_subgraph``)."""
        plain = _PLAIN
        fills: list[tuple[int | str, Any]] = []
        slot: list[Any] = [id(func)]
        add = slot.append
        # a fused task's output and input keys shape its plan: part of the shared part
        fixed = 3 if func is self._subgraph[0] else 0
        for i, a in enumerate(args):  # _shared_slot, inline (it runs for every argument)
            if i < fixed:
                add(a if i else id(a))
            elif a is None:
                add(0)
            elif type(a) in plain or (type(a) is tuple and _plain_tuple(a)):
                fills.append((i, a))
                add(0)
            else:
                add(id(a))
        if kwargs:
            for name, a in kwargs.items():
                add(name)
                add(_shared_slot(a, name, fills))
        for _, key in refs:
            if type(key) is not str and not (type(key) is tuple and _plain_tuple(key)):
                return None
        try:
            key = tuple(slot)
            got = self._templates.get(key)
        except TypeError:  # an unhashable output key of a fused task
            return None
        if got is None:
            if len(self._templates) >= _MAX_TEMPLATES:
                return None
            filled = {s for s, _ in fills}
            shared_args = tuple(None if i in filled else a for i, a in enumerate(args))
            shared_kw = {k: None if k in filled else a for k, a in kwargs.items()}
            shared_func = func
            if fixed and not kwargs:
                ordered = self._subgraph[1](func, shared_args)
                if ordered is not None:
                    shared_func, shared_args = ordered
            shared, fids = self._dumps_task((shared_func, shared_args, shared_kw), self._cache)
            head = None
            if len(shared.frames) == 1:  # (out-of-band buffers: pickled whole, per call)
                blob = bytes(shared.frames[0])
                fid = self._cache.hold(blob, self)
                self.shared_bytes += len(blob)
                head = _TEMPLATE_HEAD + self._function + _short_str(fid) + _F_CALL
                fids = [*fids, fid]
            # the call's own objects stay referenced: their ids are the cache key
            got = self._templates[key] = (func, args, kwargs, head, fids)
        head = got[3]
        if head is None:
            return None
        file = self._refs_file
        file.seek(0)
        file.truncate()
        self._refs_pickler.dump((refs, tuple(fills)))
        tail = _body(file.getvalue())
        if tail is None:
            return None
        return self._serialized([head + tail + _TAIL]), got[4]
