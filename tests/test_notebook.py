"""The seed notebook, with only its imports changed to shoal, runs top to bottom on a real kernel.

The run here sleeps less than the notebook: its Rosenbrock function's ``time.sleep(0.1)``
(simulated work, slept ~850 times by the search) becomes ``TASK_SLEEP``. Every cell still
runs, the search does as many evaluations (its stop depends on its scale only), and the
cell's source is otherwise the seed's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from _waiting import wait_for

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("bokeh")
psutil = pytest.importorskip("psutil")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "advanced-distributed.ipynb"
KERNEL = "python3"
RAISES = "raises-exception"
# The seed's simulated work in its Rosenbrock function, and what this test sleeps instead:
# 850 evaluations over 4 workers are ~21 s of sleep at 0.1 s, ~2 s at 0.01 s.
SEED_SLEEP = "time.sleep(0.1)"
TASK_SLEEP = "time.sleep(0.01)"

@pytest.fixture(scope="module")
def kernel_name() -> str:
    """A `python3` kernelspec that runs this interpreter, installed into the venv if missing."""
    from jupyter_client.kernelspec import KernelSpecManager

    if KERNEL not in KernelSpecManager().find_kernel_specs():
        subprocess.run(
            [sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL],
            check=True,
            capture_output=True,
        )
    spec = KernelSpecManager().get_kernel_spec(KERNEL)
    interpreter = spec.argv[0]
    # jupyter_client runs a bare "python" as the current interpreter.
    assert interpreter in {"python", "python3", sys.executable}, (
        f"kernelspec {KERNEL!r} at {spec.resource_dir} runs {interpreter}, not {sys.executable}; "
        f"reinstall it with {sys.executable} -m ipykernel install --sys-prefix"
    )
    return KERNEL


def processes_in(directory: Path) -> list[psutil.Process]:
    """Processes whose working directory is `directory`: the kernel and the workers it started."""
    found = []
    for proc in psutil.process_iter(["cwd"]):
        if proc.info["cwd"] and Path(proc.info["cwd"]) == directory:
            found.append(proc)
    return found


def test_bokeh_accepts_the_seeds_circle_call() -> None:
    # p.circle(x=, y=) without a radius raises UnsetValueError from Bokeh 3.7 on.
    import bokeh
    from bokeh.embed import file_html
    from bokeh.models import ColumnDataSource
    from bokeh.plotting import figure
    from bokeh.resources import CDN

    p = figure(x_range=(-5, 5), y_range=(-5, 5))
    source = ColumnDataSource({"x": [0.0], "y": [0.0], "c": ["grey"]})
    try:
        p.circle(source=source, x="x", y="y", color="c")
        file_html(p, CDN)
    except Exception as exc:
        pytest.fail(
            f"bokeh {bokeh.__version__} rejects the notebook's p.circle(...) call ({exc!r}); "
            "install the notebook extra's pin: pip install 'bokeh>=3.6,<3.7'"
        )


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_seed_notebook_runs_on_shoal(tmp_path: Path, kernel_name: str) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    slept = [cell for cell in nb.cells if cell.cell_type == "code" and SEED_SLEEP in cell.source]
    assert len(slept) == 1 and "def rosenbrock" in slept[0].source, "the seed's sleep moved"
    slept[0].source = slept[0].source.replace(SEED_SLEEP, TASK_SLEEP)
    # Not in the notebook: close the cluster so that no worker outlives the kernel.
    nb.cells.append(nbformat.v4.new_code_cell("client.close()"))
    client = nbclient.NotebookClient(
        nb,
        kernel_name=kernel_name,
        timeout=240,
        allow_errors=False,  # an untagged cell that raises fails the run here
        resources={"metadata": {"path": str(tmp_path)}},
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        pytest.fail(f"an untagged cell raised:\n{exc}")

    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    not_run = [cell.source for cell in code_cells if cell.execution_count is None]
    assert not not_run, f"cells that did not run: {not_run}"

    for cell in code_cells:
        errors = [out for out in cell.outputs if out.output_type == "error"]
        if RAISES in cell.metadata.get("tags", []):
            assert [e.ename for e in errors] == ["ZeroDivisionError"], cell.source
        else:
            assert not errors, cell.source

    tagged = [cell for cell in code_cells if RAISES in cell.metadata.get("tags", [])]
    assert len(tagged) == 3

    search = next(cell for cell in code_cells if "as_completed" in cell.source)
    printed = "".join(out.get("text", "") for out in search.outputs if out.output_type == "stream")
    assert printed.count("\n") >= 2, "the search printed fewer than two new best scores"

    gather = next(cell for cell in code_cells if cell.source == "client.gather(f)")
    assert gather.outputs[0]["data"]["text/plain"] == "11"  # 5//5 + 25//5 + 30//6

    erred = code_cells[-2]  # the seed's last cell; the last one is our client.close()
    assert "'erred'" in erred.outputs[0]["data"]["text/plain"], erred.outputs

    assert (tmp_path / "data" / "random.hdf5").is_file()
    wait_for(lambda: not processes_in(tmp_path), timeout=30)


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_print_and_warn_in_tasks_show_in_the_notebook_cell(tmp_path: Path, kernel_name: str) -> None:
    """Issue 10: ``shoal.print`` / ``shoal.warn`` in a task reach the cell that waits on it.
    The event travels ahead of the task's result on the same connection, so it is shown
    before ``result()`` returns, in that cell."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import shoal\n"
            "from shoal import Client\n"
            "client = Client(n_workers=1, threads_per_worker=1, dashboard_address=None)\n"
            "def shout():\n"
            "    shoal.print('hello from a task', 42)\n"
            "    shoal.warn('careful from a task')\n"
            "    return 1\n"
        ),
        nbformat.v4.new_code_cell("client.submit(shout, pure=False).result()"),
        nbformat.v4.new_code_cell("client.close()"),
    ]
    runner = nbclient.NotebookClient(
        nb, kernel_name=kernel_name, timeout=120, allow_errors=False,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    runner.execute()
    cell = nb.cells[1]
    # The kernel may flush one print as several stream outputs (text, then its newline).
    streams: dict[str, str] = {}
    for out in cell.outputs:
        if out.output_type == "stream":
            streams[out.name] = streams.get(out.name, "") + out.text
    assert "hello from a task 42" in streams.get("stdout", ""), cell.outputs
    assert "careful from a task" in streams.get("stderr", ""), cell.outputs
    wait_for(lambda: not processes_in(tmp_path), timeout=30)
