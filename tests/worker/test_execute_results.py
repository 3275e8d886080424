"""The executor's handling of results (issue 9, item 13): measure with ``sizeof`` first and
pickle only small results inline; a result that cannot be pickled does not fail its task
(only a fetch that needs its bytes fails, with the "cannot be sent" error)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from shoal.protocol._call import Call
from shoal.protocol._serialize import INLINE_LIMIT, FunctionCache, FunctionTable, dumps_task
from shoal.worker._events import Execute
from shoal.worker._execute import Executor

PICKLED: list[str] = []


class Big:
    """Reports a big size; records every attempt to pickle it."""

    def __sizeof__(self) -> int:
        return 100 * INLINE_LIMIT

    def __reduce__(self) -> Any:
        PICKLED.append("big")
        return (Big, ())


def make_big() -> Big:
    return Big()


def make_lock() -> Any:
    return threading.Lock()


def run(fn: Any, *, send_inline: bool = True) -> Any:
    cache = FunctionCache()
    payload, fids = dumps_task(Call(fn, (), {}), cache)
    table = FunctionTable()
    table.add_blobs({f: cache.blobs[f] for f in fids})
    data: dict[Any, Any] = {}
    loop = asyncio.new_event_loop()
    try:
        ex = Executor(0, data, table, loop, lambda batch: None, "tcp://w")
        done = ex._execute(Execute("k", payload, (0,), send_inline, ()), 0)
    finally:
        loop.close()
    return done, data


def test_big_result_is_not_pickled_to_find_out_it_is_big() -> None:
    PICKLED.clear()
    done, data = run(make_big)
    assert done.error is None and done.inline is None
    assert PICKLED == []
    assert isinstance(data["k"], Big)


def test_unpicklable_result_wanted_by_the_client_does_not_fail_its_task() -> None:
    done, data = run(make_lock)
    assert done.error is None
    assert done.inline is None  # the client's fetch will say it cannot be sent
    assert "k" in data


def test_small_result_rides_inline() -> None:
    done, _ = run(lambda: 42)
    assert done.error is None and done.inline is not None


def return_none() -> None:
    return None


def test_none_result_rides_inline_and_loads_as_none() -> None:
    from shoal.protocol._serialize import loads

    done, data = run(return_none)
    assert done.error is None and done.typename == "NoneType"
    assert done.inline is not None and loads(done.inline) is None
    assert "k" in data and data["k"] is None


def test_none_result_is_not_sent_when_no_client_wants_it() -> None:
    done, _ = run(return_none, send_inline=False)
    assert done.error is None and done.inline is None


def make_array() -> Any:
    import numpy as np

    return np.zeros(2)


def test_result_type_is_named_as_dasks_typename_module_and_name() -> None:
    from dask.utils import typename

    done, data = run(make_array)
    assert done.typename == "numpy.ndarray" == typename(type(data["k"]))
    assert run(make_big)[0].typename == f"{__name__}.Big"
