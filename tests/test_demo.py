"""`shoal demo`: the data helper, and the whole tour run in a subprocess at a tiny size."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _waiting import wait_for

h5py = pytest.importorskip("h5py")

from shoal.demo import _plot, prepare_random, tour  # noqa: E402

# -- prepare_random ---------------------------------------------------------------------------


def test_prepare_random_writes_chunked_exponential_float32(tmp_path: Path) -> None:
    path = prepare_random(tmp_path / "sub" / "random.hdf5", blocks=3, block_size=1000, seed=1)
    assert path == (tmp_path / "sub" / "random.hdf5").resolve()
    with h5py.File(path, mode="r") as f:
        dset = f["/x"]
        assert dset.shape == (3000,)
        assert dset.dtype == np.float32
        assert dset.chunks == (1000,)
        values = dset[:]
    assert values.min() >= 0
    assert 0.9 < values.mean() < 1.1  # exponential with scale 1
    assert [p.name for p in path.parent.iterdir()] == ["random.hdf5"]  # no .partial left


def test_prepare_random_is_seeded(tmp_path: Path) -> None:
    a = prepare_random(tmp_path / "a.hdf5", blocks=2, block_size=500, seed=7)
    b = prepare_random(tmp_path / "b.hdf5", blocks=2, block_size=500, seed=7)
    c = prepare_random(tmp_path / "c.hdf5", blocks=2, block_size=500, seed=8)
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb, h5py.File(c, "r") as fc:
        np.testing.assert_array_equal(fa["/x"][:], fb["/x"][:])
        assert not np.array_equal(fa["/x"][:], fc["/x"][:])


def test_prepare_random_skips_a_matching_file_and_rewrites_others(tmp_path: Path) -> None:
    path = prepare_random(tmp_path / "r.hdf5", blocks=2, block_size=100)
    written = path.stat().st_mtime_ns
    prepare_random(path, blocks=2, block_size=100)
    assert path.stat().st_mtime_ns == written

    prepare_random(path, blocks=3, block_size=100)  # other size: rewritten
    with h5py.File(path, "r") as f:
        assert f["/x"].shape == (300,)

    path.write_bytes(b"not an hdf5 file")
    prepare_random(path, blocks=1, block_size=10)
    with h5py.File(path, "r") as f:
        assert f["/x"].shape == (10,)


@pytest.mark.parametrize(("blocks", "block_size"), [(0, 10), (1, 0), (-1, 5)])
def test_prepare_random_rejects_empty_sizes(tmp_path: Path, blocks: int, block_size: int) -> None:
    with pytest.raises(ValueError, match="at least one"):
        prepare_random(tmp_path / "r.hdf5", blocks=blocks, block_size=block_size)
    assert not list(tmp_path.iterdir())


def test_prepare_random_is_public_and_documented() -> None:
    import shoal.demo

    assert shoal.demo.prepare_random is prepare_random
    assert "blocks" in (prepare_random.__doc__ or "")


# -- pieces of the tour -----------------------------------------------------------------------


def test_tour_arguments() -> None:
    args = tour._parse_args([])
    assert (args.full, args.blocks, args.data_dir, args.workers) == (False, None, "data", 4)
    assert args.task_seconds == 0.1  # the notebook's sleep
    args = tour._parse_args(["--blocks", "4", "--data-dir", "d", "--workers", "2",
                             "--task-seconds", "0.01"])
    assert (args.blocks, args.data_dir, args.workers, args.task_seconds) == (4, "d", 2, 0.01)
    for bad in (["--blocks", "0"], ["--full", "--blocks", "3"], ["--search-stop", "9"],
                ["--task-seconds", "-1"]):
        with pytest.raises(SystemExit):
            tour._parse_args(bad)


def test_tour_says_whether_it_wrote_or_reused_the_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(2):
        tour._prepare_data(tour._Printer(), tmp_path, blocks=1)
    first, second = capsys.readouterr().out.splitlines()
    assert "random.hdf5 (written)" in first
    assert "random.hdf5 (reused)" in second


def test_rosenbrock_minimum_is_at_one_one() -> None:
    assert tour.rosenbrock((1.0, 1.0)) == ((1.0, 1.0), 0.0)
    assert tour.rosenbrock((0.0, 0.0))[1] == 1.0


def test_search_plot_without_bokeh_is_an_svg_page(tmp_path: Path) -> None:
    page = _plot._svg_page([(0.0, 0.0), (1.0, 1.0)], [(0.0, 0.0), (1.0, 1.0)])
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<circle") == 2
    assert "<polyline" in page


def test_search_plot_with_bokeh_is_standalone(tmp_path: Path) -> None:
    pytest.importorskip("bokeh")
    path = _plot.write_search_plot(tmp_path / "plot.html", [(0.5, 0.5)], [(0.5, 0.5)])
    text = path.read_text()
    assert "Bokeh" in text
    assert "cdn.bokeh.org" not in text  # resources inlined: the page works offline


# -- the whole tour ---------------------------------------------------------------------------


def processes_in(directory: Path) -> list[int]:
    psutil = pytest.importorskip("psutil")
    return [
        p.pid
        for p in psutil.process_iter(["cwd"])
        if p.info["cwd"] and Path(p.info["cwd"]) == directory
    ]


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_tour_runs_end_to_end(tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    data_dir = tmp_path / "given"
    cwd.mkdir()
    # The search's 280 evaluations sleep 0.01 s each instead of the notebook's 0.1 s (~14 s
    # on 2 workers); it stops at the same scale, after as many evaluations.
    argv = ["--blocks", "4", "--data-dir", str(data_dir), "--workers", "2", "--search-stop", "0.3",
            "--task-seconds", "0.01"]
    code = f"import sys; from shoal.demo.tour import main; sys.exit(main({argv!r}))"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=170
    )
    out = proc.stdout
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{proc.stderr[-3000:]}"

    # Persist: four sums, all equal to numpy's.
    with h5py.File(data_dir / "random.hdf5", "r") as f:
        expected = float(f["/x"][:].astype("f8").sum())
    sums = [float(s.replace(",", "")) for s in re.findall(r"sum = ([\d,.]+)", out)]
    assert len(sums) == 4, out
    assert sums == pytest.approx([expected] * 4, rel=1e-4)
    assert re.search(r"sums match\s+yes", out), out
    assert re.search(r"del x\s+16 MB freed, 4 chunks released", out), out
    assert re.search(r"speed-up\s+[\d.]+x", out), out

    # Asynchronous: new bests, then the final one and the plot.
    assert "new best   score" in out
    final = re.search(r"final best\s+score (\S+) at \(", out)
    assert final is not None, out
    assert float(final.group(1)) < 5
    assert (data_dir / "rosenbrock-search.html").is_file()

    # Debugging: the ZeroDivisionError, where it came from, and the erred task.
    assert re.search(r"client.gather\(f\)\s+good input -> 11", out), out
    assert re.search(r"bad input  -> ZeroDivisionError: ", out), out
    assert re.search(r"remote traceback ends\s+tour.py:\d+ in ratio: return a // b", out), out
    assert re.search(r"erred tasks\s+\[.*\('ratio-[^']+', 'erred'\)", out), out
    assert re.search(r"recreate_error_locally\(f\)\s+raised here: ZeroDivisionError", out), out
    assert re.search(r"local frame\s+tour.py:\d+ in ratio: return a // b", out), out

    # Nothing written outside the data directory, no process left behind.
    assert sorted(p.name for p in data_dir.iterdir()) == ["random.hdf5", "rosenbrock-search.html"]
    assert list(cwd.iterdir()) == []
    wait_for(lambda: not processes_in(cwd), timeout=20)
