"""Unpickling on a worker imports modules, from two threads: the event loop (fetched data,
scattered data, ``client.run`` functions) and the task threads (task payloads). Found by
the chaos suite (tests/chaos/test_kill_workers.py): a freshly restarted worker unpickled
fetched numpy arrays on its loop while a task thread unpickled a task that imports numpy,
and CPython's import deadlock avoidance handed one of them a half-initialized module: a
correct task failed with ``ImportError: cannot import name ... from partially initialized
module``. The worker must unpickle in one thread at a time."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
from _waiting import wait_for

from shoal.protocol._serialize import Serialized
from shoal.worker._execute import (
    import_in_background,
    imports_ready,
    loads_when_ready,
    unpickle,
)

# A package whose import is slow and circular, like numpy's: importing ``racepkg`` runs
# ``racepkg.a``, which (after a while) imports ``racepkg.b``, which imports ``racepkg.a``.
_FILES = {
    "__init__.py": "from racepkg import a  # noqa: F401\n",
    "a.py": "X = 1\nimport time\ntime.sleep(0.3)\nfrom racepkg.b import Thing  # noqa: F401\n",
    "b.py": "from racepkg.a import X  # noqa: F401\nThing = 2\n",
}


def _global(module: str, name: str) -> Serialized:
    """A pickle that is only a reference to ``module.name`` (protocol 2 GLOBAL)."""
    return Serialized([b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n."])


@pytest.fixture
def racepkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "racepkg"
    pkg.mkdir()
    for name, text in _FILES.items():
        (pkg / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in [m for m in sys.modules if m == "racepkg" or m.startswith("racepkg.")]:
        del sys.modules[name]


@pytest.mark.usefixtures("racepkg")
def test_two_threads_unpickling_a_package_with_circular_imports_both_succeed() -> None:
    results: dict[str, object] = {}

    def load(label: str, ser: Serialized) -> None:
        try:
            results[label] = unpickle(ser)
        except BaseException as exc:
            results[label] = exc

    first = threading.Thread(target=load, args=("task", _global("racepkg.a", "X")))
    first.start()
    wait_for(lambda: "racepkg.a" in sys.modules, timeout=10)  # mid-import, in its sleep
    second = threading.Thread(target=load, args=("fetch", _global("racepkg.b", "Thing")))
    second.start()
    first.join(timeout=10)
    second.join(timeout=10)
    assert results == {"task": 1, "fetch": 2}


@pytest.mark.usefixtures("racepkg")
@pytest.mark.parametrize("load", [unpickle, loads_when_ready], ids=["unpickle", "big-scatter"])
def test_unpickling_waits_for_the_workers_background_import(load) -> None:
    # A worker imports dask in a background thread once registered; scattered data
    # unpickled on the loop or in the serializing thread raced it and failed with
    # KeyError: 'dask' (test_user_classes, under load).
    results: dict[str, object] = {}

    def scattered() -> None:
        try:
            results["load"] = load(_global("racepkg.b", "Thing"))
        except BaseException as exc:
            results["load"] = exc

    importer = import_in_background("racepkg")
    wait_for(lambda: "racepkg.a" in sys.modules, timeout=10)  # mid-import, in its sleep
    loader = threading.Thread(target=scattered)
    loader.start()
    importer.join(timeout=10)
    loader.join(timeout=10)
    assert imports_ready.is_set()
    assert results == {"load": 2}


def test_unpickling_on_the_loop_does_not_wait_for_the_ready_notice_sent_through_it() -> None:
    # The import thread's ``then`` (the worker's ready notice) runs a callback on the
    # worker's loop and waits for it; the loop meanwhile unpickles a plugin the scheduler
    # sent at registration (or a client.run function). Waiting for the notice there made
    # each wait for the other until the notice's 5 s timeout: the first client.run after
    # client.restart() with a plugin registered took 5.01 s.
    loop_turn = threading.Event()
    notice: dict[str, bool] = {}

    def then() -> None:  # stands for say_ready: needs this test's thread (the "loop")
        notice["sent"] = loop_turn.wait(10)

    thread = import_in_background("json", then=then)
    try:
        value = unpickle(Serialized([b"\x80\x04K*."]))  # 42, unpickled "on the loop"
    finally:
        loop_turn.set()
        thread.join(15)
    assert value == 42
    assert notice == {"sent": True}  # the loop was free to send the notice
    assert imports_ready.is_set()
