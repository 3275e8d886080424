"""The payload ``submit`` sends for a plain call (no processes: the client's submitting
half driven directly)."""

from __future__ import annotations

from typing import Any

from shoal.client._submit import Submitting
from shoal.protocol._call import Call
from shoal.protocol._serialize import FunctionCache, FunctionTable, dumps_task, loads


def inc(x: Any) -> Any:
    return x + 1


class _Client(Submitting):
    def __init__(self) -> None:
        self._functions = FunctionCache()
        self._call_pickles = {}


def test_a_plain_call_gets_the_payload_the_general_path_would_make() -> None:
    client = _Client()
    table = FunctionTable()
    for args in [(1,), ("a", 2.5, None, True, b"x"), ()]:
        got = client._plain_payload(inc, args)
        assert got is not None
        ser, fids = got
        want, want_fids = dumps_task(Call(inc, args, {}), client._functions)
        assert fids == want_fids
        table.add_blobs({fid: client._functions.blob(fid) for fid in fids})
        call, general = loads(ser, table), loads(want, table)
        assert type(call) is type(general) is Call
        assert (call.func, call.args, call.kwargs) == (general.func, general.args, general.kwargs)


def test_anything_but_a_python_function_over_plain_values_takes_the_general_path() -> None:
    client = _Client()
    assert client._plain_payload(len, (1,)) is None  # a builtin: pickled by reference
    assert client._plain_payload(inc, ([1],)) is None  # a list argument
    assert client._plain_payload(inc, ("x" * 100_000,)) is None  # too big to inline
    assert client._plain_payload(lambda: 1, ()) is not None  # a local function: by value
