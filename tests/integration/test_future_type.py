"""``Future.type`` is the result's class, as dask's, also for a class nested in another
one or defined inside a function (dask ships the class; shoal finds it by its name, or
from the small result delivered with the report). On the session cluster."""

from __future__ import annotations

import pytest

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
