"""Dask collections on shoal: the scheduler interface dask calls (``get``), and the
Client's ``compute`` and ``persist``.

Owns: turning a dask graph or expression into task rows (with dask's ordering as
priorities and annotations for retries, priority and workers), and rebuilding collections
over futures. Methods here are attached to :class:`Client`.
"""

from __future__ import annotations

import itertools
import uuid
import warnings
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import dask
from dask._task_spec import (
    Alias,
    DataNode,
    GraphNode,
    List,
    Task,
    TaskRef,
    _identity_cast,
    convert_legacy_graph,
    parse_input,
)
from dask.base import collections_to_expr, is_dask_collection
from dask.core import flatten

from shoal import _gc
from shoal.client import _containers, _spans, _submit
from shoal.client._annotations import other_annotations
from shoal.client._core import orphaned_key, orphaned_keys
from shoal.client._delayed_graph import delayed_graph
from shoal.client._future import Future
from shoal.client._keys import check_user_keys
from shoal.client._task_order import ordered_with_users, task_order
from shoal.protocol._call import RefCall, RefCallPickles, call_with_container
from shoal.worker._context import seceded_while_waiting

if TYPE_CHECKING:
    from shoal.client._core import ClientCore as Client  # the protocol: never the facade


def _graph_and_annotations(dsk: Any) -> tuple[dict[Any, GraphNode], dict[str, Any]]:
    annotations: dict[str, Any] = {}
    read = delayed_graph(dsk)  # dask.delayed collections: dask's cull, in linear time
    if read is not None:
        graph, annotations = read
    elif hasattr(dsk, "__dask_graph__"):
        if hasattr(dsk, "__dask_annotations__"):
            annotations = dict(dsk.__dask_annotations__() or {})
        graph = dsk.__dask_graph__()
    else:
        graph = dsk
    if not isinstance(graph, Mapping):
        raise TypeError(f"expected a dask graph (a mapping of key to task), got {type(graph).__name__}")
    if type(graph) is not dict:
        graph = dict(graph)
    _gc.settle()  # (shoal/_gc.py: dask's graph, frozen now in bulk mode)
    for value in graph.values():
        if isinstance(value, Future) and value._client is not None and not value._client._usable():
            raise RuntimeError(
                f"this computation uses {value.key!r}, held by a Client that is "
                f"{value._client.status}; its data is gone. Persist or compute it again with "
                "an open Client."
            )
    return task_nodes(graph), annotations


def task_nodes(graph: dict[Any, Any]) -> dict[Any, GraphNode]:
    """``convert_legacy_graph(graph)`` (a new dict): dask's optimised graphs are made of
    task nodes already, and then that is a copy without the keys that alias themselves;
    the type test runs in C, where dask's conversion calls a function per key."""
    types = set(map(type, graph.values()))
    if all(issubclass(t, GraphNode) and not issubclass(t, Alias) for t in types):
        return dict(graph)
    return convert_legacy_graph(graph)


def submit_graph(
    client: Client,
    graph: dict[Any, GraphNode],
    wanted: list[Any],
    annotations: dict[str, Any] | None = None,
    *,
    retries: int | None = None,
    priority: int = 0,
    workers: Any = None,
    local: set[Any] | None = None,
    actors: Any = None,
    resources: Any = None,
    allow_other_workers: bool | None = False,
) -> dict[Any, Future]:
    """Send ``graph`` to the scheduler; return futures for ``wanted`` keys.

    Options come, in order of precedence, from the collection's own annotations (per key),
    the arguments, and the ``dask.annotate`` block active now (dask's merge).

    With ``local`` (a set), a task that writes into an HDF5 file open for writing in this
    process, or holds a thread lock of this process (its pickling raises
    ``WritableH5pyError`` or ``ProcessLockError``), is not sent but added to ``local``,
    with every task that needs one of them; the futures returned are then those of the
    wanted keys left on the cluster and of the local tasks' inputs, and the caller runs
    the local tasks here. The graph still goes out once."""
    client._check_open()
    annotations = annotations or {}
    active = dask.get_annotations()
    if active or "span" in annotations:  # shoal.span: the tasks run in it (_spans.py)
        graph = _spans.graph_in_span(graph, active.get("span"), annotations.get("span"))
        client._send_spans(_spans.spans_of_graph(graph))
    if active:
        workers = active.get("workers") if workers is None else workers
        retries = active.get("retries") if retries is None else retries
        priority = priority or active.get("priority", 0)
        resources = resources or active.get("resources")
        allow_other_workers = allow_other_workers or active.get("allow_other_workers", False)
    if not callable(workers):
        workers = client._check_workers(workers)
    if not callable(retries):
        retries = client._check_retries(retries)
    if not callable(resources):
        resources = client._check_resources(resources)
    restricted = bool(resources or allow_other_workers or annotations.get("resources")
                      or annotations.get("allow_other_workers"))
    # Keys a Future of this client holds are on the cluster already: their rows stay out
    # (a wanted one's too, if it is a reference to itself). Each is pinned until the graph
    # is queued, so that its release cannot overtake the graph (see ``_pin``).
    states = client._states  # a key no Future of this client has is not held (see _held)
    # The session the graph belongs to, read before its pins and futures: if it is lost
    # before the graph is queued, its futures are cancelled and its rows dropped (see
    # ``_futures_in``, ``_submit_rows``, ``GraphPieces``).
    session = client._session
    pins = client._pin([k for k in graph if k in states])
    try:
        return _submit_graph(client, session, graph, wanted, annotations, pins, retries=retries,
                             priority=priority, workers=workers, local=local, actors=actors,
                             resources=resources, allow_other_workers=allow_other_workers,
                             restricted=restricted, active=active)
    finally:
        for key, st in pins:
            client._decref(key, st)


def _submit_graph(client: Client, session: int, graph: dict[Any, GraphNode], wanted: list[Any],
                  annotations: dict[str, Any], pins: list[tuple[Any, Any]], *, retries: Any,
                  priority: Any, workers: Any, local: set[Any] | None, actors: Any,
                  resources: Any, allow_other_workers: Any, restricted: bool,
                  active: dict[str, Any]) -> dict[Any, Future]:
    ann_retries = annotations.get("retries")
    ann_priority = annotations.get("priority")
    ann_workers = annotations.get("workers")
    ann_resources = annotations.get("resources")
    ann_loose = annotations.get("allow_other_workers")
    restrictions: list[tuple[Any, dict[str, float] | None, bool]] = []
    pinned = {k for k, _ in pins}
    # (read only below; the copy leaves out the held keys' references to themselves)
    nodes = graph if not pinned else {k: v for k, v in graph.items()
                                      if not (k in pinned and isinstance(v, Alias)
                                              and v.target == k)}
    _gc.settle()  # (shoal/_gc.py: containers of a graph's existing objects, frozen in bulk mode)
    _check_external_inputs(client, nodes)
    actor_keys = _actor_keys(actors, wanted)
    if actor_keys:
        nodes = _as_actors(nodes, actor_keys)
    gen = next(client._generation)
    keys = list(dict.fromkeys(wanted))
    futures = dict(zip(keys, client._futures_in(session, keys), strict=True))
    # A large graph goes out as its rows are made, in the order its tasks will run (inputs
    # first), so that the cluster starts on it while the rest is pickled; actors and
    # restrictions must be known before any task runs, so such graphs go whole.
    in_pieces = len(nodes) > _submit.PIECE_ROWS and not actor_keys and not restricted
    if in_pieces:  # (the order is walked as the rows are made: see ``ordered``)
        sequence, users = ordered_with_users(nodes)
        pieces = client._graph_pieces(list(futures), session, users)
    else:
        ordering = task_order(nodes)
        sequence = ((k, ordering.get(k, 0)) for k in nodes)
    _gc.settle()  # (shoal/_gc.py: the graph's order, frozen in bulk mode before a young
    # collection on the loop walks every item)
    rows: list[tuple[Any, ...]] = []
    add = pieces.add if in_pieces else rows.append
    pickles = RefCallPickles(client._functions)
    # Options that are the same for every key (no annotation, no callable) are read once.
    same_r = ann_retries is None and not callable(retries)
    same_p = ann_priority is None and not callable(priority)
    same_w = ann_workers is None and workers is None
    r, p, w = (retries if same_r else None), (priority if same_p else None), None
    prefixes: dict[Any, str] = {}
    size = 0
    try:
        with client._functions.batch():
            for key, rank in sequence:
                node = nodes[key]
                if key in pinned and key not in futures:
                    continue
                if local and not local.isdisjoint(node.dependencies):
                    local.add(key)  # an input runs here (rows come inputs first in pieces)
                    continue
                if not same_r:
                    r = _option(ann_retries, retries, key)
                if not same_p:
                    p = _option(ann_priority, priority, key)
                if not same_w:
                    w = client._check_workers(_option(ann_workers, workers, key))
                if restricted:
                    need = client._check_resources(_option(ann_resources, resources, key))
                    loose = bool(_option(ann_loose, allow_other_workers, key))
                    if need or loose:
                        restrictions.append((key, need, loose))
                prio = (-int(p or 0), gen, rank)
                # a tuple key's prefix is its name's: read once per name (a layer's tasks)
                name = key[0] if type(key) is tuple and key else None
                prefix = prefixes.get(name) if name is not None else None
                if prefix is None:
                    prefix = _prefix(key)
                    if name is not None:
                        prefixes[name] = prefix
                    elif prefix == "shuffle-barrier":  # (a string key: p2p's barrier)
                        _refuse_p2p(node)
                flat = _flat_call(node)
                shares = False  # a templated row: its data is its layer's shared part
                try:
                    fast = None
                    if flat is not None:
                        fast = pickles(*flat)
                        if fast is None:
                            fast = pickles.templated(*flat)
                            shares = fast is not None
                    if fast is None:
                        payload = node if flat is None else RefCall(*flat, node.dependencies)
                        row = client._row(key, payload, prio, int(r or 0), w, prefix)
                except TypeError as exc:
                    if local is None or not _bound_here(exc):
                        raise
                    local.add(key)  # it writes into a file (or locks) here: the caller runs it
                    continue
                if fast is not None:  # the row _row would make, without a reducer call
                    row = (key, fast[0], list(node.dependencies), fast[1], prio, int(r or 0),
                           w, prefix)
                add(row)
                if not shares:  # (its pickled size: what dask weighs, the graph it sends)
                    frames = row[1].frames
                    size += len(frames[0]) if len(frames) == 1 else row[1].nbytes
    except BaseException:
        if in_pieces:
            pieces.abort()  # the scheduler lets go of the pieces already sent
        raise
    inputs: list[Any] = []
    if local:
        if not in_pieces:  # graph order: a task may come before a local input of it
            local |= _with_dependents(nodes, local)
            rows = [row for row in rows if row[0] not in local]
            restrictions = [x for x in restrictions if x[0] not in local]
        for k in local & futures.keys():
            futures.pop(k).release()  # computed here, not on the cluster
        # (an input outside the graph, a persisted chunk, is fetched from the cluster too)
        inputs = [d for d in dict.fromkeys(d for k in local for d in nodes[k].dependencies)
                  if d not in local and d not in futures]
        futures.update(zip(inputs, client._futures_in(session, inputs), strict=True))
    # (a generator: read only when the graph has annotations shoal does not act on)
    other = (other_annotations((k for k in nodes if not local or k not in local),
                               active, annotations) if active or annotations else None)
    if in_pieces:
        pieces.close(also=inputs, without=local or (), annotations=other)
    else:
        client._submit_rows(rows, list(futures), actor_keys or None, restrictions or None,
                            session, other)
    # A layer's shared part (function, options, embedded data) is sent once, as dask
    # sends an array's or dataframe's expression once; the keys and indices that make its
    # tasks differ are the graph's shape, not data in it, and dask does not weigh them.
    _warn_if_large(size + pickles.shared_bytes)
    return futures


def _warn_if_large(size: int) -> None:
    """dask.distributed's warning for a graph whose pickled tasks weigh more than
    ``distributed.admin.large-graph-warning-threshold`` (10MB by default): data embedded
    in the graph travels with it, through the scheduler."""
    from dask.utils import format_bytes, parse_bytes

    threshold = dask.config.get("distributed.admin.large-graph-warning-threshold", "10MB")
    if size > parse_bytes(threshold):
        warnings.warn(
            f"Sending large graph of size {format_bytes(size)}.\n"
            "This may cause some slowdown: the data in it goes to the scheduler and on "
            "to the workers with its tasks.\nLoad the data with dask itself (da.from_zarr, "
            "dd.read_parquet, ...), or scatter it once and pass the futures (or delayed "
            "objects) instead of embedding it in the graph again and again.\nSee also "
            "https://docs.dask.org/en/stable/best-practices.html#load-data-with-dask",
            UserWarning, stacklevel=5,  # (the caller of compute, persist or get)
        )


def ref_call(task: Any) -> Any:
    """``task`` (a dask GraphNode) as a :class:`RefCall` when it is a plain ``Task`` of
    literal and reference arguments, else ``task`` itself."""
    flat = _flat_call(task)
    return task if flat is None else RefCall(*flat, task.dependencies)


def _flat_call(task: Any) -> tuple[Any, tuple[Any, ...], dict[str, Any], tuple[Any, ...]] | None:
    """``(func, args, kwargs, refs)`` of a :class:`RefCall` running ``task``, when it is a
    plain ``Task`` of literal and reference arguments; else None."""
    if type(task) is not Task or task._data_producer:
        return None
    args = task.args
    if len(args) == 1 and not task.kwargs and isinstance(args[0], Task):
        packed = _container_call(task.func, args[0])
        if packed is not None:
            return packed
    # One pass: the arguments are copied only when one of them is replaced (a reference
    # by None, a DataNode by its value: the Task passes the value).
    refs: list[tuple[int | str, Any]] = []
    plain: list[Any] | None = None
    for i, a in enumerate(args):
        if isinstance(a, TaskRef):
            refs.append((i, a.key))
            value = None
        elif isinstance(a, GraphNode):
            if type(a) is not DataNode:
                return None  # a nested task, list or dict of references: the Task runs it
            value = a.value
        else:
            continue
        if plain is None:
            plain = list(args)
        plain[i] = value
    kwargs = task.kwargs
    kw = kwargs
    if kwargs:
        for name, a in kwargs.items():
            if isinstance(a, TaskRef):
                refs.append((name, a.key))
                value = None
            elif isinstance(a, GraphNode):
                if type(a) is not DataNode:
                    return None
                value = a.value
            else:
                continue
            if kw is kwargs:
                kw = dict(kwargs)
            kw[name] = value
    return task.func, args if plain is None else tuple(plain), kw, tuple(refs)


def _container_call(func: Any, inner: Task) -> tuple[Any, tuple[Any, ...], dict[str, Any],
                                                     tuple[Any, ...]] | None:
    """``func(container of references and literals)`` (a tree reduction's step: dask's
    ``_identity_cast(*refs, typ=list)`` or ``List(*refs)`` as the one argument) as the
    flat call ``call_with_container(func, typ, *items)``; None for anything else."""
    if type(inner) is List:
        typ: Any = list
    elif (type(inner) is Task and inner.func is _identity_cast and len(inner.kwargs) == 1
          and inner.kwargs.get("typ") in (list, tuple)):
        typ = inner.kwargs["typ"]
    else:
        return None
    items = inner.args
    args: list[Any] = [func, typ]
    refs: list[tuple[int | str, Any]] = []
    for i, a in enumerate(items, 2):
        if isinstance(a, TaskRef):
            refs.append((i, a.key))
            a = None
        elif type(a) is Alias:
            refs.append((i, a.target))
            a = None
        elif isinstance(a, GraphNode):
            return None
        args.append(a)
    return call_with_container, tuple(args), {}, tuple(refs)


def _option(annotated: Any, given: Any, key: Any) -> Any:
    """One key's value of an option: the collection's annotation of that key, else the
    value given to the call (or active in ``dask.annotate``), which may itself be per key
    (a callable of the key, as ``dask.annotate`` allows)."""
    if annotated is not None:  # the collection's: {key: value} (dask's form)
        value = annotated.get(key) if isinstance(annotated, dict) else annotated
        if value is not None:
            return value
    return given(key) if callable(given) else given


def _actor_keys(actors: Any, wanted: list[Any]) -> list[Any]:
    """dask's ``actors=`` of compute/persist: True (every wanted key), a key or keys, or
    a dict ``{key: bool}``."""
    if actors is None or actors is False:
        return []
    if actors is True:
        return list(dict.fromkeys(wanted))
    if isinstance(actors, dict):
        return [k for k, v in actors.items() if v]
    if isinstance(actors, (list, tuple, set, frozenset)):
        return list(actors)
    return [actors]


def _as_actors(nodes: dict[Any, GraphNode], keys: list[Any]) -> dict[Any, GraphNode]:
    """The graph with the tasks of ``keys`` building actors instead of plain results."""
    from dask._task_spec import Task

    from shoal.client._actor import NewActor

    out = dict(nodes)
    for key in keys:
        node = nodes.get(key)
        if not isinstance(node, Task):
            raise TypeError(
                f"actors= names {key!r}, which is not a function call in this computation; "
                "name the keys of tasks that build the actor objects (or pass actors=True)"
            )
        out[key] = Task(key, NewActor(node.func), *node.args, **node.kwargs)
    return out


def _check_external_inputs(client: Client, nodes: dict[Any, GraphNode]) -> None:
    """Inputs outside the graph must be on the cluster; name those a closed client held.
    Only a key a closed client held can fail the check: with fewer such keys than tasks
    (none, usually), those not in the graph nor held now are looked for among the
    inputs, if any is left, rather than every input being looked up (a pass over the
    graph before its first piece leaves: 0.3-0.5 s at a million tasks)."""
    orphans = orphaned_keys()
    if len(orphans) < len(nodes):
        suspects = {k for k in orphans if k not in nodes and not client._held(k)}
        if not suspects:
            return
        suspect = suspects.__contains__
    else:
        def suspect(dep: Any) -> bool:
            return dep not in nodes and not client._held(dep) and orphaned_key(dep)
    for node in nodes.values():
        for dep in node.dependencies:
            if suspect(dep):
                raise RuntimeError(
                    f"this computation needs {dep!r}, which was held by a Client that has "
                    "been closed, so the cluster released it. Persist or compute it again "
                    "with an open Client."
                )


def _prefix(key: Any) -> str:
    from shoal.scheduler._state import key_prefix

    return key_prefix(key)


def _refuse_p2p(node: Any) -> None:
    """dask.distributed's p2p shuffle (dataframe shuffle, merge, array rechunk) needs its
    worker extension, which shoal does not have: refuse the graph before anything runs,
    rather than let its tasks fail on the workers."""
    func = getattr(node, "func", None)
    if str(getattr(func, "__module__", "")).startswith("distributed.shuffle"):
        raise NotImplementedError(
            "shoal does not implement dask.distributed's p2p shuffle (shuffle_method='p2p' "
            "or method='p2p'); pass shuffle_method='tasks' (rechunk: method='tasks'), or "
            "leave it unset: with a shoal Client, dask's dataframe shuffles use tasks"
        )


def _bound_here(exc: BaseException) -> bool:
    """Whether a task failed to pickle because it holds something of this process only:
    an HDF5 file open for writing, or a thread lock (xarray's netCDF writers take one)."""
    from shoal.protocol._h5py_refs import WritableH5pyError
    from shoal.protocol._process_locks import ProcessLockError

    while exc is not None:
        if isinstance(exc, (WritableH5pyError, ProcessLockError)):
            return True
        exc = exc.__cause__  # type: ignore[assignment]
    return False


def _with_dependents(graph: dict[Any, GraphNode], keys: set[Any]) -> set[Any]:
    dependents: dict[Any, set[Any]] = {}
    for k, node in graph.items():
        for d in node.dependencies:
            dependents.setdefault(d, set()).add(k)
    out, stack = set(), list(keys)
    while stack:
        k = stack.pop()
        if k not in out:
            out.add(k)
            stack.extend(dependents.get(k, ()))
    return out


def get(self: Client, dsk: Any, keys: Any, workers: Any = None,
        allow_other_workers: bool | None = None, resources: Any = None, sync: bool = True,
        asynchronous: Any = None, direct: Any = None, retries: int | None = None,
        priority: int = 0, fifo_timeout: Any = "60s", actors: Any = None,
        **kwargs: Any) -> Any:
    """dask's scheduler interface: compute ``keys`` of ``dsk`` on the cluster and return
    the results in the structure of ``keys`` (``sync=False``: the futures, in that
    structure). A key neither in ``dsk`` nor held on the cluster raises
    ``FutureCancelledError`` (dask's "lost dependencies"), not a wait forever.

    The arguments are dask's, in dask's order. ``actors`` as in ``compute``; ``direct``
    and ``fifo_timeout`` are accepted and change nothing. An asynchronous client (or
    ``asynchronous=True``) returns an awaitable of the answer, as dask's does; otherwise
    the answer is waited for here.

    Tasks that write into an HDF5 file this process has open for writing (``da.store``),
    or that hold a ``threading.Lock`` (xarray's ``to_netcdf``), run here, after their
    inputs are computed on the cluster: HDF5 allows one writer, and that writer is this
    process; a thread lock guards threads of this process only. Their lock (``lock=True``)
    then works as in dask."""
    with _gc.building():  # shoal/_gc.py: a big graph starts bulk mode while dask builds it
        graph, annotations = _graph_and_annotations(dsk)
        _gc.expect(len(graph))  # (and it does not end before its tasks are counted)
    wanted = list(flatten(keys)) if isinstance(keys, list) else [keys]
    check_user_keys(wanted, "Client.get")
    local: set[Any] = set()  # filled by submit_graph: the tasks to run here
    futures = submit_graph(self, graph, wanted, annotations, retries=retries,
                           priority=priority, workers=workers, local=local, actors=actors,
                           resources=resources, allow_other_workers=allow_other_workers)
    if not sync and not local:
        return _pack(keys, futures)  # dask's ``sync=False``: the futures, in keys' shape
    if self.asynchronous if asynchronous is None else asynchronous:
        return _get_async(self, graph, keys, futures, local)
    try:
        # dask's get blocks (sync=False with tasks run here too: they need the values); in
        # a task, without holding its thread slot (``x.compute()`` inside a task)
        with seceded_while_waiting():
            values = self.gather(futures, asynchronous=False)
    finally:
        _release(futures)
    return _finish(graph, keys, local, values)


async def _get_async(self: Client, graph: dict[Any, GraphNode], keys: Any,
                     futures: dict[Any, Future], local: set[Any]) -> Any:
    """``get``'s answer for an asynchronous caller: awaited on its loop, the futures held
    until their values are here (dask's releases them at once, and its awaited ``get``
    then fails with FutureCancelledError)."""
    try:
        values = await self.gather(futures, asynchronous=True)
    finally:
        _release(futures)
    return _finish(graph, keys, local, values)


def _release(futures: dict[Any, Future]) -> None:
    for f in futures.values():
        f.release()


def _finish(graph: dict[Any, GraphNode], keys: Any, local: set[Any],
            values: dict[Any, Any]) -> Any:
    """``get``'s answer from the gathered ``values``: the ``local`` tasks run here, then
    the values in ``keys``' shape."""
    if local:
        _run_here(graph, local, values)
    return _pack(keys, values)


def _run_here(graph: dict[Any, GraphNode], local: set[Any], values: dict[Any, Any]) -> None:
    """Run ``local`` tasks in this process in dependency order, filling ``values``."""
    done = set(values)
    todo = set(local)
    while todo:
        ready = [k for k in todo if all(d in done for d in graph[k].dependencies)]
        if not ready:
            raise RuntimeError("cycle among tasks run locally (a shoal bug)")
        for k in ready:
            node = graph[k]
            values[k] = node({d: values[d] for d in node.dependencies})
            done.add(k)
            todo.discard(k)


def _pack(keys: Any, values: dict[Any, Any]) -> Any:
    if isinstance(keys, list):
        return [_pack(k, values) for k in keys]
    return values[keys]


def _unpack_collections(collections: Any) -> tuple[list[Any], bool]:
    """The collections given, and whether several were (a list, tuple, set or frozenset of
    them: the answer is then a list, whichever of those it was, as dask's)."""
    if isinstance(collections, (list, tuple, set, frozenset)):
        return list(collections), True
    return [collections], False


def compute(self: Client, collections: Any, sync: bool = False, optimize_graph: bool = True,
            workers: Any = None, allow_other_workers: bool = False, resources: Any = None,
            retries: int | None = None, priority: int = 0, fifo_timeout: Any = None,
            actors: Any = None, traverse: bool = True, **kwargs: Any) -> Any:
    """Start computing collections; returns a Future per collection (results with
    ``sync=True``): a list of them for a list, tuple, set or frozenset, as dask's. Each
    future pairs with its own collection, whatever kinds are mixed (dask's own sequence of
    them lists an array's keys beside another array's). With ``traverse`` (the default), a
    dict, list, tuple, set or iterator among them is one collection: one future for the
    container, rebuilt around the results of the collections inside it, as in
    dask.distributed; other non-collections pass through unchanged. ``actors=True`` (or the keys to make actors) turns those
    tasks' results into Actors, as in dask.distributed."""
    items, many = _unpack_collections(collections)
    # each item: None (passes through), its collection's index in colls, or a container's
    # (repack, indices of the collections inside it)
    colls: list[Any] = []
    slots: list[Any] = []
    for a in items:
        if traverse and isinstance(a, (list, set, tuple, dict, Iterator)):
            a = list(a) if isinstance(a, Iterator) else a
            inner: list[Any] = []
            template = _containers.unpack(a, inner, also=Future)
            if not all(isinstance(c, Future) for c in inner):
                # (not dask.delayed of it: dask pairs mixed kinds inside wrongly) the
                # collections inside by their index in colls, futures as they are
                refs: list[Any] = []
                for c in inner:
                    refs.append(c if isinstance(c, Future) else len(colls))
                    if not isinstance(c, Future):
                        colls.append(c)
                slots.append((template, refs))
                continue
            a = dask.delayed(a)  # a plain container: one future for it, as dask's
        slots.append(len(colls) if is_dask_collection(a) else None)
        if is_dask_collection(a):
            colls.append(a)
    out: list[Any] = list(items)
    if colls:
        graph, annotations, all_keys = _collections_graph(colls, optimize_graph)
        finals: dict[Any, GraphNode] = {}
        final_keys = []
        for c, ckeys in zip(colls, all_keys, strict=True):
            func, extra = c.__dask_postcompute__()
            if _is_single_key(func, ckeys):
                final_keys.append(ckeys[0])
                continue
            fkey = f"finalize-{dask.base.tokenize(c, func, extra, ckeys)}"
            finals[fkey] = _finalize_task(fkey, func, ckeys, extra)
            final_keys.append(fkey)
        wanted = []
        for i, slot in enumerate(slots):
            if isinstance(slot, tuple):
                template, inner_refs = slot
                key = f"{type(items[i]).__name__}-{uuid.uuid4().hex}"
                results = List(*(TaskRef(j.key if isinstance(j, Future) else final_keys[j])
                                 for j in inner_refs))
                finals[key] = Task(key, _containers.repack, DataNode(None, template), results)
                wanted.append(key)
            elif slot is not None:
                wanted.append(final_keys[slot])
        graph.update(finals)
        check_user_keys(wanted, "Client.compute (a collection's key)")
        futures = submit_graph(self, graph, wanted, annotations, retries=retries,
                               priority=priority, workers=workers, actors=actors,
                               resources=resources, allow_other_workers=allow_other_workers)
        it = iter(wanted)
        for i, slot in enumerate(slots):
            if slot is not None:
                out[i] = futures[next(it)]
    if sync:
        out = self.gather(out)
    return out if many else out[0]


def _collections_graph(
    colls: list[Any], optimize_graph: bool
) -> tuple[dict[Any, GraphNode], dict[str, Any], list[Any]]:
    """One optimized graph for several collections, its annotations, and each
    collection's (nested) keys, in the order given.

    Collections backed by expressions (dataframes) are optimized together, and those backed
    by graphs (arrays, bags, delayed) together, as dask groups each; a collection's keys are
    never read from its position in one merged sequence: dask's optimized sequence of
    graph-backed collections lists their keys grouped by optimizer (an array's beside the
    other array's, whatever came between), and turns an expression optimized beside them
    into a graph whose keys come from a set (a dataframe's partitions out of order)."""
    exprs = [i for i, c in enumerate(colls) if _is_expression_backed(c)]
    graphs = [i for i in range(len(colls)) if i not in set(exprs)]
    all_keys: list[Any] = [None] * len(colls)
    graph: dict[Any, GraphNode] = {}
    annotations: dict[str, Any] = {}
    with _gc.building():  # (client.compute / persist)
        for part, backed_by_expressions in ((exprs, True), (graphs, False)):
            if not part:
                continue
            expr = collections_to_expr([colls[i] for i in part], optimize_graph).optimize()
            part_graph, part_annotations = _graph_and_annotations(expr)
            if graph:
                graph.update(part_graph)
            else:
                graph = part_graph
            for name, per_key in part_annotations.items():
                annotations.setdefault(name, {}).update(per_key)
            if backed_by_expressions:  # (an expression sequence keeps its operands' order)
                keys = list(expr.__dask_keys__())
            else:  # a graph's optimizers keep the keys asked for
                keys = [colls[i].__dask_keys__() for i in part]
            for i, k in zip(part, keys, strict=True):
                all_keys[i] = k
        _gc.expect(len(graph))
    return graph, annotations, all_keys


def _is_expression_backed(coll: Any) -> bool:
    """Whether dask's ``collections_to_expr`` takes ``coll`` as an expression (a dataframe;
    a collection of them, as xarray's) rather than wrapping its graph."""
    from dask._expr import Expr
    from dask.delayed import Delayed

    if isinstance(coll, Delayed):
        return False
    if isinstance(getattr(coll, "expr", None), Expr):
        return True
    exprs = getattr(coll, "__dask_exprs__", None)
    return exprs is not None and bool(tuple(exprs() or ()))


def _is_single_key(func: Any, keys: Any) -> bool:
    """A collection whose result is just its one key's value (a Delayed): its future is
    that key's future, as in dask.distributed (no extra finalize task)."""
    from dask.delayed import single_key

    return func is single_key and isinstance(keys, list) and len(keys) == 1 and not isinstance(keys[0], list)


def _finalize_task(key: Any, func: Any, keys: Any, extra: tuple[Any, ...]) -> GraphNode:
    from dask._task_spec import Task

    def refs(k: Any) -> Any:
        if isinstance(k, list):
            return List(*(refs(x) for x in k))
        return TaskRef(k)

    return Task(key, func, refs(keys), *map(parse_input, extra))


def persist(self: Client, collections: Any, optimize_graph: bool = True, workers: Any = None,
            allow_other_workers: bool = False, resources: Any = None,
            retries: int | None = None, priority: int = 0, fifo_timeout: Any = None,
            actors: Any = None, **kwargs: Any) -> Any:
    """Start computing collections and keep their pieces in cluster memory; returns
    equivalent collections backed by futures (a list of them for a list, tuple, set or
    frozenset, as dask's)."""
    items, many = _unpack_collections(collections)
    colls = [c for c in items if is_dask_collection(c)]
    out: list[Any] = list(items)
    if colls:
        graph, annotations, all_keys = _collections_graph(colls, optimize_graph)
        per = [list(flatten(k)) if isinstance(k, list) else [k] for k in all_keys]
        wanted = list(itertools.chain.from_iterable(per))
        check_user_keys(wanted, "Client.persist (a collection's keys)")
        futures = submit_graph(self, graph, wanted, annotations, retries=retries,
                               priority=priority, workers=workers, actors=actors,
                               resources=resources, allow_other_workers=allow_other_workers)
        it = iter(per)
        for i, c in enumerate(items):
            if is_dask_collection(c):
                rebuild, state = c.__dask_postpersist__()
                out[i] = rebuild({k: futures[k] for k in next(it)}, *state)
    return out if many else out[0]


def normalize_collection(self: Client, collection: Any) -> Any:
    """``collection`` with the tasks whose keys this client already holds futures for
    replaced by those futures (and what only they needed culled), so computing it reuses
    results instead of recomputing them (dask's ``Client.normalize_collection``). A
    collection whose graph cannot be replaced (a dataframe expression) comes back as is:
    ``compute``/``persist`` reuse held futures for it anyway.

    Raises:
        TypeError: not a dask collection.
    """
    import copy

    from dask.delayed import Delayed
    from dask.optimization import cull
    from dask.utils import ensure_dict

    if not is_dask_collection(collection):
        raise TypeError(f"normalize_collection takes a dask collection (array, bag, delayed...), "
                        f"got {type(collection).__name__}")
    graph = ensure_dict(collection.__dask_graph__())
    states = self._states
    held = [k for k in graph if k in states and states[k].refs > 0
            and states[k].status in ("pending", "finished")]
    if not held:
        return collection
    for key in held:
        graph[key] = Future(key, self)
    graph, _ = cull(graph, list(flatten(collection.__dask_keys__())))
    if isinstance(collection, Delayed):
        return Delayed(collection.key, graph)
    out = copy.copy(collection)
    try:
        out.dask = graph
    except AttributeError:  # an expression-backed collection: its graph is derived
        return collection
    return out
