"""Issue 9, item 1: objects of classes the user defines — in the script's ``__main__`` or
inside functions (``<locals>``) — travel to the workers and back, as on dask.distributed.

The dask tests at the bottom are ported from dask's own ``dask/tests/test_delayed.py``
(they run there on the local scheduler; here every graph runs on a shoal cluster).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import dask
import pytest
from dask import delayed
from dask.delayed import Delayed

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = """
import sys
from shoal import Client

class Config:
    def __init__(self, n):
        self.n = n

def setup(dask_worker=None):
    return Config(7).n

def double(config):
    return Config(config.n * 2)

scale = 2

def scaled(x):
    return x * scale

if __name__ == "__main__":
    with Client(n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        fut = client.scatter(Config(5))
        assert fut.result(timeout=15).n == 5, "scatter"
        assert client.submit(double, fut).result(timeout=15).n == 10, "submit on scattered"
        assert list(client.run(setup).values()) == [7], "run"
        assert client.submit(lambda c: c.n + 1, Config(1)).result(timeout=15) == 2, "argument"
        assert client.submit(scaled, 10).result(timeout=15) == 20, "global"
        scale = 3
        assert client.submit(scaled, 10).result(timeout=15) == 30, "changed global"
    print("ok")
"""


def test_script_classes_and_functions_reach_the_workers(tmp_path: Path) -> None:
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120,
        env={**_env(), "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_scattered_value_a_worker_cannot_load_errs_its_key(client) -> None:
    with pytest.raises(ImportError, match="only_on_the_client"):
        client.scatter(_Unloadable(), hash=False)
    assert not any(k.startswith("_Unloadable") for ks in client.has_what().values() for k in ks)
    assert client.submit(sum, [1, 2]).result(timeout=15) == 3


class _Unloadable:
    """Pickles fine, fails to unpickle (a class missing on the worker looks the same)."""

    def __reduce__(self):
        return (_refuse, ())


def _refuse():
    raise ImportError("no module named 'only_on_the_client'")


def test_locally_defined_class_in_task_arguments(client) -> None:
    class Point(NamedTuple):
        x: int
        y: int

    @dataclass
    class Box:
        size: int

    assert client.submit(lambda p: p.x + p.y, Point(1, 2)).result(timeout=15) == 3
    got = client.submit(lambda b: Box(b.size + 1), Box(1)).result(timeout=15)
    assert got.size == 2 and type(got).__name__ == "Box"


# --- ported from dask/tests/test_delayed.py --------------------------------------------------


def test_delayed_with_namedtuple(client) -> None:
    class ANamedTuple(NamedTuple):
        a: int

    literal = dask.delayed(3)
    with_class = dask.delayed({"a": ANamedTuple(a=literal)})
    assert with_class.compute() == {"a": ANamedTuple(a=3)}

    def return_nested(obj):
        return obj["a"].a

    final = delayed(return_nested)(with_class)
    assert final.compute() == 3


@dataclass
class ANonFrozenDataClass:
    a: int


@dataclass(frozen=True)
class AFrozenDataClass:
    a: int


@pytest.mark.parametrize("cls", (ANonFrozenDataClass, AFrozenDataClass))
def test_delayed_with_dataclass(client, cls) -> None:
    literal = delayed(3)
    with_class = delayed({"data": cls(a=literal)})

    def return_nested(obj):
        return obj["data"].a

    final = delayed(return_nested)(with_class)
    assert final.compute() == 3


def test_delayed_with_dataclass_with_eager_custom_init(client) -> None:
    @dataclass()
    class ADataClass:
        a: int

        def __init__(self, b: int):
            self.a = b

    with_class = delayed({"data": ADataClass(b=3)})

    def return_nested(obj):
        return obj["data"].a

    final = delayed(return_nested)(with_class)
    assert final.compute() == 3


def test_delayed_with_eager_dataclass_with_set_init_false_field(client) -> None:
    @dataclass
    class ADataClass:
        a: int
        b: int = field(init=False)

    def prep_dataclass(a):
        data = ADataClass(a=a)
        data.b = 4
        return data

    with_class = delayed({"data": prep_dataclass(3)})

    def return_nested(obj):
        return obj["data"].a

    final = delayed(return_nested)(with_class)
    assert final.compute() == 3


def test_delayed_with_dataclass_with_unset_init_false_field(client) -> None:
    @dataclass
    class ADataClass:
        a: int
        b: int = field(init=False)

    literal = dask.delayed(3)
    with_class = delayed({"data": ADataClass(a=literal)})

    def return_nested(obj):
        return obj["data"].a

    final = delayed(return_nested)(with_class)
    assert final.compute() == 3


def test_operators(client) -> None:
    a = delayed([1, 2, 3])
    assert a[0].compute() == 1
    assert (a + a).compute() == [1, 2, 3, 1, 2, 3]
    b = delayed(2)
    assert a[:b].compute() == [1, 2]

    a = delayed(10)
    assert (a + 1).compute() == 11
    assert (1 + a).compute() == 11
    assert (a >> 1).compute() == 5
    assert (a > 2).compute()
    assert (a**2).compute() == 100

    class dummy:
        def __matmul__(self, other):
            return 4

    c = delayed(dummy())
    d = delayed(dummy())
    assert (c @ d).compute() == 4


def test_delayed_decorator_on_method(client) -> None:
    class A:
        BASE = 10

        def __init__(self, base):
            self.BASE = base

        @delayed
        def addmethod(self, x, y):
            return self.BASE + x + y

        @classmethod
        @delayed
        def addclass(cls, x, y):
            return cls.BASE + x + y

        @staticmethod
        @delayed
        def addstatic(x, y):
            return x + y

    a = A(100)
    assert a.addmethod(3, 4).compute() == 107
    assert A.addmethod(a, 3, 4).compute() == 107
    assert a.addclass(3, 4).compute() == 17
    assert A.addclass(3, 4).compute() == 17
    assert a.addstatic(3, 4).compute() == 7
    assert A.addstatic(3, 4).compute() == 7
    assert isinstance(a.addmethod, types.MethodType)
    assert isinstance(A.addclass, types.MethodType)
    assert isinstance(A.addstatic, Delayed)
