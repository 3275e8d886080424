"""``Future.type`` is the result's class, as dask's, also for a class nested in another
one or defined inside a function (dask ships the class; shoal finds it by its name, or
from the small result delivered with the report, or from the class the worker sends when
its name does not find it). On the session cluster."""

from __future__ import annotations

import pytest

from shoal import wait

pytestmark = [pytest.mark.integration]


class Outer:
    class Inner:
        pass


def _make_inner() -> Outer.Inner:
    return Outer.Inner()


def test_type_of_a_class_nested_in_a_class(client):
    fut = client.submit(_make_inner)
    fut.result()
    assert fut.type is Outer.Inner


def test_type_of_a_class_defined_inside_a_function(client):
    class Local:
        def __init__(self, x: int) -> None:
            self.x = x

    fut = client.submit(Local, 1)
    value = fut.result()
    assert fut.type is not None and fut.type.__name__ == "Local"
    assert isinstance(value, fut.type)
    assert client.submit(int, 3).type in (None, int)  # (pending: None, as dask's)


def test_type_of_a_class_defined_inside_a_function_with_a_big_result(client):
    # Its pickle is over the inline limit (64 KiB): the result stays on the worker, and the
    # report carries the class itself (dask's worker sends the pickled type with every result).
    class Big:
        def __init__(self, n: int) -> None:
            self.payload = b"x" * n

    fut = client.submit(Big, 200_000)
    wait([fut], timeout=30)  # the report only: the value stays on the worker until result()
    assert fut.type is not None and fut.type.__name__ == "Big"
    value = fut.result()
    assert isinstance(value, fut.type)
