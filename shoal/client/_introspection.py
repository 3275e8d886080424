"""What the Client can ask about the work in progress and the processes running it:
``processing``, ``nbytes``, ``call_stack``, ``get_versions``, ``set_metadata`` /
``get_metadata``, ``get_scheduler_logs`` / ``get_worker_logs`` and ``dump_cluster_state``
(dask.distributed's names, arguments and return shapes).

Each is a coroutine taking the client first, attached to ``Client`` with ``two_faced``.
Questions for the scheduler are requests (``scheduler/_introspection.py``); questions for
workers are ``client.run`` calls of the functions in ``worker/_introspect.py``.
"""

from __future__ import annotations

import asyncio
import gzip
from typing import TYPE_CHECKING, Any

import dask
import msgpack

from shoal import _logs, _versions
from shoal.client import _cluster_info
from shoal.client._structure import futures_of
from shoal.worker import _introspect as on_worker

if TYPE_CHECKING:
    from shoal.client._core import ClientCore as Client

_NO_DEFAULT = object()


def _keys_of(futures: Any) -> list[Any]:
    return [f.key for f in futures_of(futures)]


async def processing(self: Client, workers: Any = None) -> dict[str, tuple[Any, ...]]:
    """The keys each worker is running or was sent to run, a tuple per worker (dask's
    shape; ``workers``: an address or name, or a list of them; all by default)."""
    from shoal.client._cluster_info import addresses

    self._check_open()
    wl = await addresses(self, self._check_workers(workers))
    got = await self._request_within("processing", self._timeout, workers=wl)
    return {w: tuple(keys) for w, keys in got.items()}


async def nbytes(self: Client, keys: Any = None, summary: bool = True,
                 **kwargs: Any) -> dict[Any, int]:
    """The bytes of each result held on the cluster (``keys``: keys, futures or persisted
    collections, all by default); with ``summary``, summed per key prefix (``{"inc": 84}``).

    Raises:
        TypeError: a collection that is not persisted (it has no results to measure).
    """
    self._check_open()
    if not isinstance(summary, bool):
        raise TypeError(f"summary must be True or False, got {summary!r}")
    if kwargs:
        raise TypeError(f"nbytes got unexpected arguments {sorted(kwargs)}")
    wanted = None if keys is None else _key_list(keys)
    rows = await self._request_within("nbytes", self._timeout, keys=wanted, summary=summary)
    return {k: n for k, n in rows}


def _key_list(keys: Any) -> list[Any]:
    """Keys given as a key, a future, a collection or a list of them, as a list of keys."""
    items = list(keys) if isinstance(keys, (list, set, frozenset)) else [keys]
    out: list[Any] = []
    for item in items:
        found = futures_of(item)
        if found:
            out.extend(f.key for f in found)
        elif dask.is_dask_collection(item):
            # dask raises TypeError here too (it iterates the collection as keys)
            raise TypeError(
                f"a {type(item).__name__} that is not persisted has no results on the "
                "cluster; persist it first (client.persist(x)) and pass what that returns")
        else:
            try:
                hash(item)
            except TypeError:
                raise TypeError(f"keys must be keys (str, int, tuple...), futures or "
                                f"collections, got {item!r}") from None
            out.append(item)
    return out


async def call_stack(self: Client, futures: Any = None, keys: Any = None
                     ) -> dict[str, dict[Any, list[str]]]:
    """The call stack of each running task, per worker: ``{worker: {key: [frame lines]}}``.
    Only the tasks of ``futures`` (futures or collections) or ``keys`` when given; workers
    running none of them are left out."""
    self._check_open()
    wanted: list[Any] | None = None
    if futures is not None or keys is not None:
        wanted = []
        if futures is not None:
            wanted.extend(_keys_of(futures))
        if keys is not None:
            wanted.extend(_key_list(keys))
    targets = await self._request_within("running_on", self._timeout, keys=wanted)
    if not targets:
        return {}
    got = await _cluster_info.run(self, on_worker.call_stacks, wanted, workers=targets,
                                  on_error="ignore")
    return {w: stacks for w, stacks in (got or {}).items() if stacks}


async def get_versions(self: Client, check: bool = False,
                       packages: Any = None) -> dict[str, Any]:
    """The software of the scheduler, each worker and this client: ``{"scheduler":
    {"host": ..., "packages": ...}, "workers": {address: ...}, "client": ...}``.

    Raises:
        ValueError: with ``check``, a required package (or Python) differs between them.
    """
    self._check_open()
    extra = _versions.check_packages(packages)
    mine = _versions.get_versions(extra)
    scheduler = await self._request_within("versions", self._timeout, packages=extra)
    workers = await _cluster_info.run(self, on_worker.versions, extra) or {}
    out = {"scheduler": scheduler, "workers": workers, "client": mine}
    if check:
        lines = _versions.mismatches(mine, scheduler, workers)
        if lines:
            raise ValueError("versions differ between the client, the scheduler and the "
                             "workers; install the same versions everywhere:\n  "
                             + "\n  ".join(lines))
    return out


def _metadata_path(keys: Any) -> list[Any]:
    path = list(keys) if isinstance(keys, list) else [keys]
    for key in path:
        try:
            hash(key)
        except TypeError:
            raise TypeError(f"metadata keys must be hashable (str, int, tuple...), got "
                            f"{key!r}; a list of keys is a path into nested metadata") from None
    return path


async def set_metadata(self: Client, key: Any, value: Any) -> None:
    """Keep ``value`` on the scheduler under ``key``; a list of keys is a path into nested
    dicts, made on demand (``set_metadata(["a", "b"], 1)`` sets ``metadata["a"]["b"]``).

    Raises:
        TypeError: an unhashable key, or a value msgpack cannot carry.
        ValueError: the path goes through a value that is not a dict.
    """
    self._check_open()
    path = _metadata_path(key)
    if not path:
        raise ValueError("set_metadata needs a key (or a non-empty list of keys)")
    try:
        msgpack.packb(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"metadata values must be msgpack serializable (numbers, strings, "
                        f"lists, dicts); got {type(value).__name__}: {exc}") from None
    refused = await self._request_within("set_metadata", self._timeout, path=path, value=value)
    if refused is not None:
        raise ValueError(refused)


async def get_metadata(self: Client, keys: Any, default: Any = _NO_DEFAULT) -> Any:
    """The metadata at ``keys`` (a key, or a list of keys: a path into nested dicts).

    Raises:
        KeyError: nothing is there and no ``default`` was given.
    """
    self._check_open()
    path = _metadata_path(keys)
    found, value = await self._request_within("get_metadata", self._timeout, path=path)
    if found:
        return value
    if default is _NO_DEFAULT:
        raise KeyError(keys)
    return default


async def get_scheduler_logs(self: Client, n: int | None = None) -> tuple[tuple[str, str], ...]:
    """The scheduler's last ``n`` log records (all kept by default, at most
    ``distributed.admin.log-length``) as a tuple of ``(level, line)``, newest first."""
    self._check_open()
    count = _logs.check_count(n)
    rows = await self._request_within("scheduler_logs", self._timeout, n=count)
    return tuple((r[0], r[1]) for r in rows)


async def get_worker_logs(self: Client, n: int | None = None, workers: Any = None,
                          nanny: bool = False) -> dict[str, tuple[tuple[str, str], ...]]:
    """Each worker's last ``n`` log records as a tuple of ``(level, line)``, newest first; with
    ``nanny=True`` its nanny's (only for this client's own ``LocalCluster``, whose nannies
    live in this process)."""
    self._check_open()
    count = _logs.check_count(n)
    wl = self._check_workers(workers)
    fn = on_worker.nanny_logs if nanny else on_worker.worker_logs
    got = await _cluster_info.run(self, fn, count, workers=wl, nanny=bool(nanny)) or {}
    return {w: tuple((r[0], r[1]) for r in rows) for w, rows in got.items()}


_FORMATS = ("msgpack", "yaml")


async def dump_cluster_state(self: Client, filename: str = "dask-cluster-dump",
                             write_from_scheduler: bool | None = None, exclude: Any = (),
                             format: str = "msgpack", **storage_options: Any) -> None:
    """Write the state of the scheduler and of every worker (tasks, holdings, recent logs,
    versions) to ``filename`` + ``.msgpack.gz`` (gzipped msgpack) or ``.yaml``, for
    debugging a stuck or misbehaving cluster. ``exclude`` names top-level task fields to
    leave out. Written by this client (``write_from_scheduler=True`` is not supported).

    Raises:
        ValueError: an unknown ``format``; ``write_from_scheduler=True``;
            ``storage_options`` (only local files are written).
    """
    self._check_open()
    if format not in _FORMATS:
        raise ValueError(f"format must be 'msgpack' or 'yaml', got {format!r}")
    if not isinstance(filename, str) or not filename:
        raise TypeError(f"filename must be a path (a non-empty string), got {filename!r}")
    if write_from_scheduler:
        raise ValueError("write_from_scheduler=True is not supported: shoal writes the dump "
                         "from the client; leave it unset")
    if storage_options:
        raise ValueError(f"storage options {sorted(storage_options)} are not supported: "
                         "only local files are written")
    skip = {exclude} if isinstance(exclude, str) else set(exclude)
    scheduler = await self._request_within("dump_state", self._timeout)
    workers = await _cluster_info.run(self, on_worker.dump_state, on_error="return") or {}
    workers = {w: (v if isinstance(v, dict) else {"error": repr(v)}) for w, v in workers.items()}
    if skip:
        for task in scheduler["tasks"].values():
            for name in skip:
                task.pop(name, None)
    state = {"scheduler": scheduler, "workers": workers,
             "versions": {"scheduler": await self._request_within(
                 "versions", self._timeout, packages=[]),
                 "client": _versions.get_versions()}}
    await asyncio.get_running_loop().run_in_executor(None, _write_dump, state, filename, format)


def _write_dump(state: dict[str, Any], filename: str, format: str) -> None:
    if format == "msgpack":
        path = filename if filename.endswith(".msgpack.gz") else f"{filename}.msgpack.gz"
        with gzip.open(path, "wb") as f:
            f.write(msgpack.packb(state, default=repr))
    else:
        import yaml

        path = filename if filename.endswith(".yaml") else f"{filename}.yaml"
        with open(path, "w") as f:
            yaml.safe_dump(_plain(state), f)


def _plain(value: Any) -> Any:
    """Lists for tuples and text for anything yaml's safe dumper does not know."""
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, (str, int, float)) else k: _plain(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)
