"""progress() and futures_of() over fake futures: pure counting and the text display."""

from __future__ import annotations

import io
import threading

import dask
import pytest
from _fake_futures import FakeFuture

from shoal.diagnostics import futures_of, progress
from shoal.diagnostics._futures_of import is_future
from shoal.diagnostics._progress import ProgressState, progress_html, track


def futures(prefix: str, n: int, status: str = "pending") -> list[FakeFuture]:
    return [FakeFuture(f"{prefix}-{i:04d}", status) for i in range(n)]


# ----------------------------------------------------------------------------- futures_of
def test_futures_of_walks_nested_containers_in_order_without_duplicates() -> None:
    a, b, c = futures("x", 3)
    assert futures_of([a, (b, {"k": c}), {a}, [b]]) == [a, b, c]
    assert futures_of(a) == [a]
    assert futures_of([1, "text", None]) == []


def test_futures_of_keeps_distinct_futures_of_one_key() -> None:
    a = FakeFuture("x-1")
    twin = FakeFuture("x-1")
    found = futures_of([a, twin, a])
    assert len(found) == 2 and found[0] is a and found[1] is twin  # as dask's


def test_futures_of_reads_collection_graphs() -> None:
    class Persisted:
        """A dask collection whose graph values are futures, as after client.persist."""

        def __init__(self, graph: dict[str, object]) -> None:
            self.graph = graph

        def __dask_graph__(self) -> dict[str, object]:
            return self.graph

        def __dask_keys__(self) -> list[str]:
            return list(self.graph)

        def __dask_postcompute__(self):  # type: ignore[no-untyped-def]
            return list, ()

        def __dask_postpersist__(self):  # type: ignore[no-untyped-def]
            return Persisted, ()

        def __dask_tokenize__(self) -> str:
            return "persisted"

    fs = futures("chunk", 3)
    coll = Persisted({f.key: f for f in fs} | {"alias": "chunk-0000"})
    assert dask.is_dask_collection(coll)
    assert futures_of(coll) == fs
    assert futures_of([coll, fs[0]]) == fs


def test_delayed_is_not_taken_for_a_future() -> None:
    d = dask.delayed(sum)([1, 2])
    assert not is_future(d)
    assert futures_of(d) == []


# ----------------------------------------------------------------------------- state
def test_state_counts_per_prefix_and_is_idempotent() -> None:
    state = ProgressState(multi=True)
    for key in ("inc-1", "inc-2", ("sum-0123456789abcdef0123456789abcdef", 0)):
        state.add(key)
    state.finish("inc-1", "finished")
    state.finish("inc-1", "finished")
    state.finish(("sum-0123456789abcdef0123456789abcdef", 0), "error")
    counts = state.counts()
    assert (counts["inc"].total, counts["inc"].done) == (2, 1)
    assert (counts["sum"].total, counts["sum"].erred) == (1, 1)
    assert not state.all_done()
    state.finish("inc-2", "cancelled")
    assert state.all_done()
    assert state.counts()["inc"].cancelled == 1
    state.add("inc-3")
    state.finish("inc-3", "lost")
    assert (state.counts()["inc"].lost, state.counts()["inc"].done) == (1, 3)


def test_track_single_group_and_complete_flag() -> None:
    done = futures("a", 2, status="finished")
    pending = futures("b", 3)
    state = track(done + pending, multi=False, complete=True)
    assert list(state.counts()) == ["all tasks"]
    assert state.counts()["all tasks"].total == 5
    assert state.counts()["all tasks"].done == 2
    fresh = track(done + pending, multi=True, complete=False)
    assert list(fresh.counts()) == ["b"]  # already-done futures left out
    pending[0].complete()
    assert fresh.counts()["b"].done == 1


def test_callbacks_from_another_thread_are_counted() -> None:
    fs = futures("inc", 200)
    state = track(fs, multi=True, complete=True)
    threads = [
        threading.Thread(target=lambda part=part: [f.complete() for f in part])
        for part in (fs[::2], fs[1::2])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert state.all_done()
    assert state.counts()["inc"].finished == 200


# ----------------------------------------------------------------------------- text display
def run_progress_in_thread(
    *args: object, **kwargs: object
) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            progress(*args, **kwargs)  # type: ignore[arg-type]
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=target)
    t.start()
    return t, errors


def test_text_progress_blocks_until_done_and_shows_each_prefix() -> None:
    inc = futures("inc", 30)
    total = futures("total", 1)
    out = io.StringIO()
    t, errors = run_progress_in_thread(inc, total, notebook=False, file=out)
    t.join(0.3)
    assert t.is_alive(), "progress() returned before the futures finished"
    for f in inc[:-1]:
        f.complete()
    total[0].complete("error")
    assert t.is_alive()
    inc[-1].complete()
    t.join(5)
    assert not t.is_alive() and not errors
    text = out.getvalue()
    assert "inc" in text and "30/30" in text
    assert "total" in text and "1/1" in text and "1 erred" in text


def test_text_progress_returns_at_once_when_everything_is_done() -> None:
    out = io.StringIO()
    progress(futures("inc", 4, status="finished"), notebook=False, multi=False, file=out)
    assert "all tasks" in out.getvalue() and "4/4" in out.getvalue()


def test_progress_without_futures_explains() -> None:
    with pytest.raises(TypeError, match="persist"):
        progress([1, 2, 3], notebook=False)


def test_notebook_html_shows_counts_and_errors() -> None:
    state = ProgressState()
    for key in ("inc-1", "inc-2", "boom-1"):
        state.add(key)
    state.finish("inc-1", "finished")
    state.finish("boom-1", "error")
    page = progress_html(state.counts())
    assert "1 / 2" in page and "1 / 1" in page
    assert "1 erred" in page and "#d62728" in page
    assert "<code" in page and "inc" in page


def test_notebook_mode_updates_a_display(monkeypatch: pytest.MonkeyPatch) -> None:
    """notebook=True returns at once and updates one display in place as futures finish."""
    import IPython.display

    shown: list[str] = []

    class Handle:
        def update(self, obj: object) -> None:
            shown.append(obj.data)  # type: ignore[attr-defined]

    def fake_display(obj: object, display_id: bool = False) -> Handle:
        shown.append(obj.data)  # type: ignore[attr-defined]
        return Handle()

    monkeypatch.setattr(IPython.display, "display", fake_display)
    fs = futures("inc", 3)
    progress(fs, notebook=True)
    assert "0 / 3" in shown[0]
    for f in fs:
        f.complete()
    assert "3 / 3" in shown[-1]


# --- the scheduler plugin behind progress(): counts the graph behind the futures ----------


def _graph(**states: str) -> dict:
    """Tasks x-1, x-2, y-3, z-4: z-4 needs y-3 and x-2, y-3 needs x-1; ``states`` sets states."""
    from types import SimpleNamespace

    tasks = {k: SimpleNamespace(key=k, state=states.get(k, "waiting"), dependencies=())
             for k in ("x-1", "x-2", "y-3", "z-4")}
    tasks["y-3"].dependencies = (tasks["x-1"],)
    tasks["z-4"].dependencies = (tasks["y-3"], tasks["x-2"])
    return tasks


def _started(tasks: dict, keys: list, complete: bool = True, multi: bool = True):
    from types import SimpleNamespace

    from shoal.diagnostics._progress_plugin import GraphProgress

    plugin = GraphProgress(keys, complete=complete, multi=multi, group="all tasks")
    plugin.start(SimpleNamespace(state=SimpleNamespace(tasks=tasks)))
    return plugin


def test_graph_progress_counts_every_task_behind_the_keys() -> None:
    tasks = _graph()
    plugin = _started(tasks, ["z-4"])
    assert plugin.counts() == {"x": (2, 0, 0), "y": (1, 0, 0), "z": (1, 0, 0)}
    plugin.transition("x-1", "processing", "memory")
    plugin.transition("x-2", "processing", "erred")
    assert plugin.counts() == {"x": (2, 2, 1), "y": (1, 0, 0), "z": (1, 0, 0)}
    assert _started(_graph(), ["z-4"], multi=False).counts() == {"all tasks": (4, 0, 0)}


def test_graph_progress_leaves_out_or_counts_what_was_done_before() -> None:
    # complete=False: a task already in memory (and what it was made from) is not shown.
    tasks = _graph(**{"y-3": "memory", "x-1": "released"})
    assert _started(tasks, ["z-4"], complete=False).counts() == {"x": (1, 0, 0), "z": (1, 0, 0)}
    assert _started(tasks, ["z-4"]).counts() == {"x": (1, 0, 0), "y": (1, 1, 0), "z": (1, 0, 0)}


def test_graph_progress_walks_a_root_that_arrives_after_its_inputs_ran() -> None:
    # A big graph comes in pieces, outputs last: inputs can finish (and be released)
    # before the watched key exists on the scheduler.
    tasks = _graph()
    del tasks["z-4"]
    plugin = _started(tasks, ["z-4"])
    assert plugin.counts() == {}
    plugin.transition("x-1", "processing", "memory")
    tasks["x-1"].state = "released"
    full = _graph(**{"x-1": "released"})
    tasks["z-4"] = full["z-4"]
    full["y-3"].dependencies = (tasks["x-1"],)
    plugin.transition("z-4", "released", "waiting")
    assert plugin.counts() == {"x": (2, 1, 0), "y": (1, 0, 0), "z": (1, 0, 0)}


def test_graph_progress_removes_itself_when_its_client_leaves() -> None:
    import asyncio
    from types import SimpleNamespace

    from shoal.diagnostics._progress_plugin import GraphProgress

    removed = []
    plugin = GraphProgress(["z-4"], complete=True, multi=True, group="all", name="p",
                           owner="Client-ab12")

    async def remove(name: str) -> None:
        removed.append(name)
        del host.plugins[name]

    host = SimpleNamespace(plugins={"p": plugin}, remove=remove)
    scheduler = SimpleNamespace(plugin_host=host)
    assert plugin.remove_client(scheduler, "Client-other") is None
    asyncio.run(plugin.remove_client(scheduler, "Client-ab12"))
    assert removed == ["p"]


def test_graph_progress_counts_an_input_that_erred_before_its_root_arrived() -> None:
    tasks = _graph()
    late = tasks.pop("z-4")
    plugin = _started(tasks, ["z-4"])
    plugin.transition("x-2", "processing", "erred")
    tasks["z-4"] = late
    plugin.transition("z-4", "released", "waiting")
    assert plugin.counts()["x"] == (2, 1, 1)
