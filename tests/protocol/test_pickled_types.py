"""A result's class that its type name does not find travels pickled (``pickled_class``),
and the client's ``Future.type`` loads it: dask's worker sends every result's pickled type.
No processes: the worker's side is the pure function, the client's its message handler."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import cloudpickle
import numpy as np

from shoal.client._client import Client
from shoal.client._future import Future, FutureState
from shoal.protocol._messages import KeyDone, KeysDone
from shoal.protocol._typenames import load_class, pickled_class, type_name


class Named:
    pass


def test_a_class_its_name_finds_is_not_sent() -> None:
    for cls in (int, type(None), np.ndarray, Named):
        assert pickled_class(cls) is None, cls


def test_a_class_defined_in_a_function_is_sent_and_loads_back() -> None:
    class Local:
        pass

    blob = pickled_class(Local)
    assert blob is not None
    assert pickled_class(Local) is blob  # once per class
    assert load_class(blob) is Local  # (cloudpickle gives this process's class back)


def test_a_class_that_does_not_pickle_is_not_sent() -> None:
    assert pickled_class(type(threading.Lock())) is None
    assert load_class(b"not a pickle") is None


def _future(client: Any, key: str) -> Future:
    fut = Future.__new__(Future)
    fut.key = key
    fut._state = client._states[key]
    return fut


def test_future_type_loads_the_class_the_report_carried() -> None:
    class Big:
        pass

    blob = cloudpickle.dumps(Big)
    name = type_name(Big)
    client = SimpleNamespace(_states={"x": FutureState(), "y": FutureState()})
    Client._on_message(client, None, [KeyDone("x", 10**6, name, None, blob)])  # type: ignore[arg-type]
    Client._on_message(client, None, [KeysDone(["y"], [10**6], [name], [None], [blob])])  # type: ignore[arg-type]
    for key in "xy":
        fut = _future(client, key)
        assert fut.type is Big and fut.type is Big
        assert repr(fut) == f"<Future: finished, type: {name}, key: {key}>"
    # Reported again without the class (the key wanted again): the class stays.
    Client._on_message(client, None, [KeyDone("x", 10**6, name, None)])  # type: ignore[arg-type]
    assert _future(client, "x").type is Big
