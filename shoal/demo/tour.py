"""`shoal demo`: the "Advanced distributed" notebook, run end to end in a terminal.

Walks the notebook's three sections with shoal's public API only (what a user would type):
persist (sums timed before and after `client.persist`), the asynchronous Rosenbrock search
with `as_completed(...).add`, and debugging a ZeroDivisionError raised on a worker. Everything
it writes goes under `--data-dir`; every process it starts is closed before it returns.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import random
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dask import delayed

DEFAULT_BLOCKS = 100  # 400 MB: the whole tour takes well under a minute on 2 cores
FULL_BLOCKS = 1000  # the tutorial's size: 4 GB
BLOCK_SIZE = 1_000_000
SEED = 0
MB = 1e6


def main(argv: list[str] | None = None) -> int:
    """Run the tour; `argv` defaults to the command line (without the `demo` word).

    Returns the process exit code: 0 when every section behaved as the notebook says.
    """
    args = _parse_args(argv)
    out = _Printer()
    blocks = (
        args.blocks if args.blocks is not None else FULL_BLOCKS if args.full else DEFAULT_BLOCKS
    )
    data_dir = Path(args.data_dir)
    started = time.perf_counter()

    out.title(
        f'shoal demo: the "Advanced distributed" notebook  '
        f"({blocks:,} blocks x {BLOCK_SIZE:,} float32 = {_mb(blocks * BLOCK_SIZE * 4)})"
    )
    path = _prepare_data(out, data_dir, blocks)
    ok = True
    with _timed() as t:
        client = _start_client(args.workers)
    with client:
        out.row("cluster", _describe_cluster(client), t.seconds)
        out.row("dashboard", getattr(client, "dashboard_link", None) or "(none)")
        ok &= _persist_section(out, client, path)
        ok &= _asynchronous_section(out, client, data_dir, args.search_stop,
                                    args.task_seconds)
        ok &= _debugging_section(out, client)
    out.blank()
    out.row(
        "done",
        "cluster closed" if ok else "SOME STEPS DID NOT GO AS EXPECTED",
        time.perf_counter() - started,
    )
    return 0 if ok else 1


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="shoal demo",
        description='Run the "Advanced distributed" tutorial notebook end to end on shoal.',
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--full",
        action="store_true",
        help=f"the tutorial's full data size ({FULL_BLOCKS:,} blocks, 4 GB)",
    )
    size.add_argument(
        "--blocks",
        type=int,
        metavar="N",
        help=f"data size in blocks of {BLOCK_SIZE:,} float32 (default {DEFAULT_BLOCKS})",
    )
    parser.add_argument(
        "--data-dir",
        default="data",
        metavar="DIR",
        help="where the HDF5 file and the search plot go (default: ./data)",
    )
    parser.add_argument(
        "--workers", type=int, default=4, metavar="N", help="worker processes (default 4)"
    )
    parser.add_argument(
        "--search-stop",
        type=float,
        default=0.001,
        metavar="SCALE",
        help="stop the Rosenbrock search when its scale drops below this (default 0.001, as the notebook)",
    )
    parser.add_argument(
        "--task-seconds",
        type=float,
        default=TASK_SECONDS,
        metavar="S",
        help=f"how long each Rosenbrock evaluation sleeps, its simulated work "
        f"(default {TASK_SECONDS}, as the notebook)",
    )
    args = parser.parse_args(argv)
    if args.task_seconds < 0:
        parser.error("--task-seconds must not be negative")
    if args.blocks is not None and args.blocks < 1:
        parser.error("--blocks must be at least 1")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if not 0 < args.search_stop < 5:
        parser.error("--search-stop must be between 0 and 5 (the initial scale)")
    return args


# -- setup ------------------------------------------------------------------------------------


def _prepare_data(out: _Printer, data_dir: Path, blocks: int) -> Path:
    from shoal.demo import prepare_random

    path = data_dir / "random.hdf5"
    before = _stamp(path)
    with _timed() as t:
        prepare_random(
            path, blocks=blocks, block_size=BLOCK_SIZE, seed=SEED, progress=_interactive()
        )
    state = "reused" if before is not None and _stamp(path) == before else "written"
    out.row("data", f"{path} ({state})", t.seconds)
    return path


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _start_client(workers: int) -> Any:
    from shoal import Client

    return Client(n_workers=workers)


def _describe_cluster(client: Any) -> str:
    try:
        nthreads = client.nthreads()
    except Exception:  # a detail for the header only; never fail the tour on it
        return "started"
    threads = sum(nthreads.values())
    return f"{len(nthreads)} workers, {threads} threads"


# -- Persist ----------------------------------------------------------------------------------


def _persist_section(out: _Printer, client: Any, path: Path) -> bool:
    import dask.array as da
    import h5py

    from shoal import progress, wait

    out.section("Persist")
    with h5py.File(path, mode="r") as f:
        dset = f["/x"]
        x = da.from_array(dset, chunks=(BLOCK_SIZE,))
        nbytes = x.nbytes
        before = [_timed_sum(out, x, "before persist") for _ in range(2)]

        with _timed() as t:
            # changes x from a set of instructions to a set of futures pointing to data in RAM
            x = client.persist(x)
            if _interactive():
                progress(x)
            wait(x)
        keys = _keys_of(x)
        held = len(_held(client, keys))
        out.row(
            "client.persist(x); wait(x)", f"{_mb(nbytes)} in worker RAM, {held} chunks", t.seconds
        )

        after = [_timed_sum(out, x, "after persist") for _ in range(2)]

    speedup = min(s for _, s in before) / max(min(s for _, s in after), 1e-9)
    sums_match = all(math.isclose(v, before[0][0], rel_tol=1e-5) for v, _ in before + after)
    out.row("speed-up", f"{speedup:.1f}x once x is in worker memory")
    out.row("sums match", "yes" if sums_match else f"NO: {[v for v, _ in before + after]}")

    # The notebook's exercise: how is the memory of x released? Drop the last reference.
    with _timed() as t:
        del x
        released = _wait_for(lambda: not _held(client, keys), timeout=10)
    left = len(_held(client, keys))
    detail = (
        f"{_mb(nbytes)} freed, {held} chunks released" if released else f"{left} chunks still held"
    )
    out.row("del x", detail, t.seconds)
    return sums_match and released


def _timed_sum(out: _Printer, x: Any, when: str) -> tuple[float, float]:
    with _timed() as t:
        total = float(x.sum().compute())
    out.row("x.sum().compute()", f"{when:<15} sum = {total:,.0f}", t.seconds)
    return total, t.seconds


def _keys_of(collection: Any) -> set[Any]:
    from dask.core import flatten

    return set(flatten(collection.__dask_keys__()))


def _held(client: Any, keys: set[Any]) -> set[Any]:
    """Which of `keys` the scheduler still has in memory on some worker.

    Read through `client.cluster.scheduler.tasks`, as the notebook's debugging cell does.
    """
    tasks = client.cluster.scheduler.tasks
    return {key for key in keys if (ts := tasks.get(key)) is not None and ts.state == "memory"}


# -- Asynchronous -----------------------------------------------------------------------------


# The notebook's simulated work in each Rosenbrock evaluation (its time.sleep(0.1)).
TASK_SECONDS = 0.1


def rosenbrock(
    point: tuple[float, float], seconds: float = TASK_SECONDS
) -> tuple[tuple[float, float], float]:
    """Compute the rosenbrock function and return the point and result"""
    time.sleep(seconds)
    score = (1 - point[0]) ** 2 + 2 * (point[1] - point[0] ** 2) ** 2
    return point, score


def _asynchronous_section(
    out: _Printer, client: Any, data_dir: Path, stop: float, seconds: float = TASK_SECONDS
) -> bool:
    from shoal import as_completed
    from shoal.demo._plot import write_search_plot

    out.section("Asynchronous: Rosenbrock search with as_completed(...).add, 10 points in flight")
    uniform = random.Random(SEED).uniform
    expected = math.ceil(math.log(stop / 5) / math.log(0.99))

    scale: float = 5  # Initial random perturbation scale
    best_point = (0.0, 0.0)  # Initial guess
    best_score = float("inf")  # Best score so far
    startx = [uniform(-scale, scale) for _ in range(10)]
    starty = [uniform(-scale, scale) for _ in range(10)]
    evaluated: list[tuple[float, float]] = []
    bests: list[tuple[float, float]] = []

    with _timed() as t, _bar(expected, "evaluations") as bar:
        # initial 10 random points
        futures = [client.submit(rosenbrock, (x, y), seconds)
                   for x, y in zip(startx, starty, strict=True)]
        iterator = as_completed(futures)

        for res in iterator:
            # take a completed point, is it an improvement?
            point, score = res.result()
            evaluated.append(point)
            bar.update(1)
            if score < best_score:
                best_score, best_point = score, point
                bests.append(point)
                bar.write(
                    f"  new best   score {score:12.6g}   point ({point[0]: .6f}, {point[1]: .6f})"
                )

            x, y = best_point
            newx, newy = (x + uniform(-scale, scale), y + uniform(-scale, scale))

            # add new point, dynamically, to work on the cluster
            new_point = client.submit(rosenbrock, (newx, newy), seconds)
            iterator.add(new_point)  # Start tracking new task as well

            # Narrow search and consider stopping
            scale *= 0.99
            if scale < stop:
                break

    out.row(
        "final best",
        f"score {best_score:.6g} at ({best_point[0]:.4f}, {best_point[1]:.4f}), "
        f"{len(evaluated)} evaluations",
        t.seconds,
    )
    plot = write_search_plot(data_dir / "rosenbrock-search.html", evaluated, bests)
    out.row("search plot", str(plot))
    return math.isfinite(best_score)


# -- Debugging --------------------------------------------------------------------------------


def ratio(a: int, b: int) -> int:
    # The notebook decorates this with @delayed; a plain module-level function is pickled by
    # reference instead of by value, so tracebacks name this file and show the source line.
    return a // b


def _debugging_section(out: _Printer, client: Any) -> bool:
    import dask

    out.section("Debugging")
    ina = [5, 25, 30]
    inb = [5, 5, 6]
    out_ = delayed(sum)([delayed(ratio)(a, b) for (a, b) in zip(ina, inb, strict=True)])
    f = client.compute(out_)
    good = client.gather(f)
    out.row("client.gather(f)", f"good input -> {good!r}")

    ina = [5, 25, 30]
    inb = [5, 0, 6]
    out_ = delayed(sum)([delayed(ratio)(a, b) for (a, b) in zip(ina, inb, strict=True)])
    f = client.compute(out_)
    ok = good == 11  # 5 // 5 + 25 // 5 + 30 // 6
    if not ok:
        out.row("", "NOT 11 as expected")
    try:
        client.gather(f)
    except ZeroDivisionError as exc:
        out.row("client.gather(f)", f"bad input  -> {_describe(exc)}")
        out.row("  remote traceback ends", _last_frame(exc))
    else:
        out.row("client.gather(f)", "bad input  -> NO EXCEPTION (expected ZeroDivisionError)")
        ok = False

    erred = [
        (k, v.state) for k, v in client.cluster.scheduler.tasks.items() if v.exception is not None
    ]
    out.row("erred tasks", repr(erred))
    ok &= bool(erred)

    with dask.config.set(scheduler="sync"):
        try:
            out_.compute()
        except ZeroDivisionError as exc:
            out.row('out.compute(), "sync"', f"{_describe(exc)} at {_last_frame(exc)}")

    try:
        client.recreate_error_locally(f)
    except ZeroDivisionError as exc:
        out.row("recreate_error_locally(f)", f"raised here: {_describe(exc)}")
        out.row("  local frame", _last_frame(exc))
    else:
        out.row("recreate_error_locally(f)", "NO EXCEPTION (expected ZeroDivisionError)")
        ok = False

    if hasattr(client, "explain"):
        out.row("client.explain(f)", "the failure story:")
        for line in str(client.explain(f)).splitlines():
            out.line(f"    {line}")
    return ok


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _last_frame(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "(no traceback)"
    frame = frames[-1]
    where = f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"
    return f"{where}: {frame.line.strip()}" if frame.line else where


# -- presentation -----------------------------------------------------------------------------


class _Printer:
    """Aligned rows: label, detail, and seconds right-aligned in their own column."""

    label_width = 28
    detail_width = 62

    def title(self, text: str) -> None:
        self.line(text)

    def section(self, name: str) -> None:
        self.blank()
        self.line(name)

    def row(self, label: str, detail: str, seconds: float | None = None) -> None:
        text = f"  {label:<{self.label_width}}{detail}"
        if seconds is not None:
            text = f"{text:<{self.label_width + self.detail_width}} {seconds:7.2f} s"
        self.line(text)

    def blank(self) -> None:
        self.line("")

    def line(self, text: str) -> None:
        print(text, flush=True)


class _Timer:
    seconds = 0.0


@contextlib.contextmanager
def _timed() -> Iterator[_Timer]:
    timer = _Timer()
    start = time.perf_counter()
    try:
        yield timer
    finally:
        timer.seconds = time.perf_counter() - start


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def write(self, text: str) -> None:
        print(text, flush=True)


@contextlib.contextmanager
def _bar(total: int, unit: str) -> Iterator[Any]:
    """A tqdm bar on an interactive terminal; plain printing otherwise."""
    if not _interactive():
        yield _NoBar()
        return
    from tqdm import tqdm

    with tqdm(total=total, unit=unit[:-1], leave=False, file=sys.stderr) as bar:
        yield bar


def _interactive() -> bool:
    return sys.stdout.isatty() and sys.stderr.isatty()


def _wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _mb(nbytes: float) -> str:
    return f"{nbytes / MB:,.0f} MB" if nbytes >= MB else f"{nbytes / 1e3:,.0f} kB"


if __name__ == "__main__":
    sys.exit(main())
