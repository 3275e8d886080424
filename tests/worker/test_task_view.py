"""``worker.tasks`` as WorkerPlugins and ``client.run`` functions read it (dask's
``Worker.tasks``): the tasks the worker runs, and the values it holds as tasks in
``"memory"``, as dask keeps them. Driven over the pure worker state, no sockets."""

from __future__ import annotations

from shoal.worker._state import WorkerState
from shoal.worker._task_view import Moving, TasksView


def test_held_values_read_as_tasks_in_memory_with_their_size() -> None:
    state = WorkerState("w1")
    state.held["x"] = 8
    view = TasksView(state.tasks, None, state.held)
    assert "x" in view and len(view) == 1 and list(view) == ["x"]
    ts = view["x"]
    assert ts.key == "x" and ts.state == "memory" and ts.nbytes == 8
    assert ts.exception is None and ts.dependencies == ()


def test_a_held_key_moving_reads_as_its_move() -> None:
    state = WorkerState("w1")
    state.held["x"] = 8
    view = TasksView(state.tasks, Moving("x", "released", None), state.held)
    assert view["x"].state == "released"


def test_a_key_neither_run_nor_held_is_missing() -> None:
    view = TasksView({}, None, {})
    assert "y" not in view and view.get("y") is None and len(view) == 0
