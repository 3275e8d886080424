"""Named datasets shared between clients: ``publish_dataset``, ``get_dataset``,
``list_datasets``, ``unpublish_dataset`` (methods attached to Client) and the
``client.datasets`` mapping, with dask.distributed's signatures and errors.

Owns: pickling a published value with its futures replaced by their keys, and binding
those keys to the receiving client's futures on the way back. The scheduler stores the
bytes and keeps the keys alive (``shoal/scheduler/_datasets.py``).
"""

from __future__ import annotations

import asyncio
import io
import pickle
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

import cloudpickle
from dask._task_spec import TaskRef

from shoal.client._future import Future
from shoal.client._topics import ask
from shoal.protocol._messages import (
    DatasetGet,
    DatasetList,
    DatasetPublish,
    DatasetUnpublish,
    UpdateGraph,
)

if TYPE_CHECKING:
    from shoal.client._core import ClientCore as Client  # the protocol: never the facade

_no_default = object()
_binding = threading.local()  # the client that futures being unpickled belong to


class _DatasetPickler(cloudpickle.Pickler):
    """cloudpickle, with every Future written as its key (and the key noted)."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.keys: dict[Any, None] = {}

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, Future):
            self.keys[obj.key] = None
            return _bind, (obj.key,)
        return super().reducer_override(obj)


def _bind(key: Any) -> Any:
    """Unpickling: a Future of the receiving client (a bare reference elsewhere)."""
    client = getattr(_binding, "client", None)
    if client is None:
        return TaskRef(key)
    _binding.keys.append(key)
    return Future(key, client)


def _dumps(value: Any) -> tuple[bytes, list[Any]]:
    buffer = io.BytesIO()
    pickler = _DatasetPickler(buffer)
    try:
        pickler.dump(value)
    except Exception as exc:
        raise TypeError(
            f"a {type(value).__name__} cannot be published: it does not pickle ({exc})"
        ) from exc
    return buffer.getvalue(), list(pickler.keys)


def _check_name(name: Any) -> None:
    if not isinstance(name, (str, bytes, int, float, tuple)):
        raise TypeError(
            f"a dataset name must be a str, int, float or tuple of them (a dask key), got "
            f"{type(name).__name__}"
        )


def _raise_if_error(answer: Any) -> Any:
    if answer[0] == "ok":
        return answer[1]
    _, kind, message = answer
    raise {"KeyError": KeyError, "ValueError": ValueError}.get(kind, RuntimeError)(message)


async def publish_dataset(self: Client, *args: Any, name: Any = None, override: bool = False,
                    **kwargs: Any) -> None:
    """Publish futures or (persisted) collections under names other clients can look up.

    ``publish_dataset(model=fut)``, ``publish_dataset(fut, name="model")`` or
    ``publish_dataset({"model": fut})``. The scheduler keeps the published futures' keys
    in memory until the name is unpublished, even after this client lets go of them.
    Collections are not computed: persist them first.

    Raises:
        KeyError: a name is already published and ``override`` is False.
        ValueError: positional arguments without ``name`` that are not one dict.
        TypeError: a value does not pickle, or a name is not a dask key.
    """
    names: list[Any] = list(kwargs)
    values: list[Any] = list(kwargs.values())
    if name is not None:
        if not args:
            raise ValueError(
                "If name is provided, expecting call signature like publish_dataset(df, name='ds')"
            )
        names.append(name)
        values.append(args[0] if len(args) == 1 else args)
    elif args:
        if len(args) != 1 or not isinstance(args[0], Mapping):
            raise ValueError("If name is omitted, positional argument must be a {name: value} dict")
        names.extend(args[0])
        values.extend(args[0].values())
    for n in names:
        _check_name(n)
    items = [(n, *_dumps(v)) for n, v in zip(names, values, strict=True)]
    self._check_open()
    answer = await asyncio.wait_for(
        ask(self, lambda rid: DatasetPublish(rid, items, bool(override))), self._timeout
    )
    _raise_if_error(answer)


async def unpublish_dataset(self: Client, name: Any, **kwargs: Any) -> None:
    """Remove the named dataset(s) (a name or a list of names); unknown names are ignored.
    Its keys are released unless a client still holds futures of them."""
    names = name if isinstance(name, list) else [name]
    self._check_open()
    _raise_if_error(await asyncio.wait_for(ask(self, lambda rid: DatasetUnpublish(rid, names)),
                                           self._timeout))


async def get_dataset(self: Client, name: Any, default: Any = _no_default, **kwargs: Any) -> Any:
    """The dataset published under ``name`` (a list of names gives a list), its futures
    bound to this client.

    Raises:
        KeyError: no dataset has that name, and no ``default`` was given.
    """
    names = name if isinstance(name, list) else [name]
    self._check_open()
    payloads = _raise_if_error(
        await asyncio.wait_for(ask(self, lambda rid: DatasetGet(rid, names)), self._timeout)
    )
    out: list[Any] = []
    keys: list[Any] = []
    for n, payload in zip(names, payloads, strict=True):
        if payload is None:
            if default is _no_default:
                raise KeyError(f"Dataset {n!r} not found")
            out.append(default)
            continue
        _binding.client, _binding.keys = self, keys
        try:
            out.append(pickle.loads(payload))
        finally:
            _binding.client = None
    if keys:  # this client wants them now: the scheduler reports their state to it
        self._send(UpdateGraph([], list(dict.fromkeys(keys)), {}))
    return out if isinstance(name, list) else out[0]


async def list_datasets(self: Client, **kwargs: Any) -> tuple[Any, ...]:
    """The names of the published datasets, sorted by their text (a tuple, as dask's)."""
    self._check_open()
    names = _raise_if_error(await asyncio.wait_for(ask(self, DatasetList), self._timeout))
    return tuple(names)


class Datasets(MutableMapping[Any, Any]):
    """``client.datasets``: the published datasets as a mapping (``client.datasets["x"]``,
    ``"x" in client.datasets``, ``client.datasets["x"] = fut``, ``del client.datasets["x"]``).

    With an asynchronous client, ``await client.datasets["x"]`` and ``async for name in
    client.datasets`` work; the operations Python cannot await raise TypeError naming the
    method to await instead.
    """

    __slots__ = ("_client",)

    def __init__(self, client: Client) -> None:
        self._client = client

    def _blocking(self, use: str, instead: str) -> None:
        if self._client.asynchronous:
            raise TypeError(f"{use} cannot be awaited with an asynchronous client; "
                            f"use {instead}")

    def __getitem__(self, key: Any) -> Any:
        return self._client.get_dataset(key)  # awaitable with an asynchronous client

    def __setitem__(self, key: Any, value: Any) -> None:
        self._blocking("client.datasets[name] = value", "await client.publish_dataset(name=value)")
        self._client.publish_dataset(value, name=key)

    def __delitem__(self, key: Any) -> None:
        # As in dask: deleting an unknown name is not an error.
        self._blocking("del client.datasets[name]", "await client.unpublish_dataset(name)")
        self._client.unpublish_dataset(key)

    def __contains__(self, key: object) -> bool:
        self._blocking("name in client.datasets", "name in await client.list_datasets()")
        return key in self._client.list_datasets()

    def __iter__(self) -> Iterator[Any]:
        self._blocking("for name in client.datasets", "async for")
        yield from self._client.list_datasets()

    async def _names(self) -> AsyncIterator[Any]:
        for name in await self._client.list_datasets():
            yield name

    def __aiter__(self) -> AsyncIterator[Any]:
        if not self._client.asynchronous:
            raise TypeError("async for over client.datasets needs an asynchronous client; "
                            "use a plain for")
        return self._names()

    def __len__(self) -> int:
        self._blocking("len(client.datasets)", "len(await client.list_datasets())")
        return len(self._client.list_datasets())

    def __repr__(self) -> str:
        if self._client.asynchronous:
            return "<Datasets: await client.list_datasets() to see them>"
        return f"<Datasets: {self._client.list_datasets()!r}>"
