"""``python -m benchmarks``: parse arguments, run each workload in fresh subprocesses, report.

The parent process never imports shoal or distributed; every figure comes from a child started
with ``benchmarks._child`` in its own session, so a hung or crashed system is killed by process
group and id, and the other workloads still run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks._browser import INSTALL_HINT, chromium_path
from benchmarks._report import (
    HEADER,
    Outcome,
    format_value,
    kept_sections,
    markdown_table,
    merge_repetitions,
    one_line,
    reference_lines,
    results_markdown,
    table_rows,
)
from benchmarks._spec import SYSTEM_TITLES, SYSTEMS, WORKLOADS, Run, Size, plan

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "RESULTS.md"
QUICK_TIMEOUT_S = 240.0
REAP_GRACE_S = 3.0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line; unknown workload names exit with the list of valid ones."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run shoal and dask.distributed side by side and write benchmarks/RESULTS.md.",
    )
    parser.add_argument(
        "workloads",
        nargs="*",
        metavar="WORKLOAD",
        help=f"workloads to run, default all: {', '.join(WORKLOADS)}",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes (a few minutes in all)")
    size.add_argument("--full", action="store_true", help="full sizes (persist: 1e9 floats, 4 GB)")
    parser.add_argument("--only", choices=SYSTEMS, help="run one system only")
    parser.add_argument(
        "--repeat",
        type=int,
        metavar="N",
        help="runs per system of every selected workload, alternating the systems; the "
        "table shows medians (default: per workload, up to 3 for the short ones; "
        "1 = one run each, dask then shoal)",
    )
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="where to write the table")
    parser.add_argument("--no-write", action="store_true", help="print the table, write nothing")
    parser.add_argument(
        "--timeout", type=float, help="seconds per subprocess (default: per workload)"
    )
    parser.add_argument(
        "--data-dir",
        help="keep the persist workload's HDF5 file here and reuse it (default: a temp dir)",
    )
    args = parser.parse_args(argv)
    unknown = [w for w in args.workloads if w not in WORKLOADS]
    if unknown:
        parser.error(
            f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}"
        )
    if args.repeat is not None and args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    args.workloads = list(dict.fromkeys(args.workloads)) or list(WORKLOADS)
    args.size = "quick" if args.quick else "full" if args.full else "default"
    args.systems = (args.only,) if args.only else SYSTEMS
    return args


def _descendants(pid: int) -> dict[int, float]:
    """pid -> create time of every live descendant of ``pid`` (create time guards pid reuse)."""
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return {}
    found = {}
    for child in children:
        try:
            found[child.pid] = child.create_time()
        except psutil.Error:
            pass
    return found


def _reap(seen: dict[int, float], grace_s: float) -> int:
    """Wait up to ``grace_s`` for the processes in ``seen`` to exit, then SIGKILL those left.

    Only processes this run started (descendants recorded while the child ran, with matching
    create times) are touched. Returns how many had to be killed.
    """
    import psutil

    def alive() -> list[psutil.Process]:
        procs = []
        for pid, created in seen.items():
            try:
                proc = psutil.Process(pid)
                if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                    procs.append(proc)
            except psutil.Error:
                pass
        return procs

    deadline = time.monotonic() + grace_s
    while (left := alive()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            pass
    return len(left)


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def execute(run: Run, workdir: Path, timeout_s: float, extra: dict[str, object]) -> Outcome:
    """Run one workload on one system in a fresh subprocess and collect its outcome."""
    stem = f"{run.workload}-{run.system}{('-' + run.prefix.rstrip('_')) if run.prefix else ''}"
    stem += f"-{run.rep}"
    out, log = workdir / f"{stem}.json", workdir / f"{stem}.log"
    params = {**run.params, **extra}
    cmd = [
        sys.executable, "-m", "benchmarks._child",
        "--workload", run.workload, "--system", run.system,
        "--params", json.dumps(params), "--out", str(out),
    ]  # fmt: skip
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    outcome = Outcome()
    seen: dict[int, float] = {}
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            cmd, cwd=workdir, env=env, stdout=logf, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None and time.monotonic() < deadline:
            seen.update(_descendants(proc.pid))
            try:
                proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is None:
            seen.update(_descendants(proc.pid))
            outcome.errors.append(f"timed out after {timeout_s:.0f} s (killed)")
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the group this run created
            except ProcessLookupError:
                pass
            proc.wait()
    killed = _reap(seen, REAP_GRACE_S)
    if killed:
        outcome.notes.append(
            f"{killed} process(es) started by the run were still alive {REAP_GRACE_S:.0f} s "
            "after it ended (the client was closed); killed them"
        )
    if out.exists():
        result = json.loads(out.read_text())
        if "metrics" in result:
            outcome.metrics.update(result["metrics"])
        else:
            outcome.errors.append(result["error"])
            print(result.get("traceback", ""), file=sys.stderr)
    elif not outcome.errors:
        tail = _log_tail(log, 1)
        outcome.errors.append(f"exited with code {proc.returncode} without a result: {tail}")
    if outcome.errors:
        print(f"--- last lines of the {stem} log ---\n{_log_tail(log)}\n---", file=sys.stderr)
    return outcome


def _prepare_data(n: int, directory: Path) -> Path:
    from benchmarks._data import hdf5_matches, write_hdf5

    path = directory / f"random-{n}.hdf5"
    if hdf5_matches(str(path), n):
        print(f"reusing {path}")
    else:
        print(f"writing {n:,} float32 ({n * 4 / 1e9:.1f} GB) to {path} ...", flush=True)
        start = time.perf_counter()
        write_hdf5(str(path), n)
        print(f"  written in {time.perf_counter() - start:.1f} s")
    return path


def _summary(outcome: Outcome) -> str:
    if outcome.errors:
        return "error: " + one_line(outcome.errors[0], 200)
    if outcome.skipped:
        return "not run: " + outcome.skipped[0]
    return "  ".join(f"{k}={format_value(v)}" for k, v in outcome.metrics.items())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    size: Size = args.size
    from benchmarks._machine import environment

    env = environment()
    print(" | ".join(f"{k}: {v}" for k, v in env.items() if k != "platform"))
    busy = os.getloadavg()[0]
    if busy > (os.cpu_count() or 1):
        print(
            f"warning: load average {busy:.1f} exceeds the {os.cpu_count()} cores; "
            "figures will be noisy (the ratios less so)"
        )
    runs = plan(args.workloads, size, args.systems, args.repeat)
    per_run: dict[tuple[str, str, int], Outcome] = {}
    failed: dict[tuple[str, str], int] = {}  # (workload, system) -> repetition that failed
    with tempfile.TemporaryDirectory(prefix="shoal-bench-") as tmp:
        workdir = Path(tmp)
        data: Path | None = None
        for run in runs:
            workload = WORKLOADS[run.workload]
            count = workload.runs(run.system, args.repeat) if run.system in SYSTEMS else 1
            label = f"{run.workload} on {SYSTEM_TITLES[run.system]}"
            label += f" ({run.prefix.rstrip('_')})" if run.prefix else ""
            label += f", run {run.rep + 1} of {count}" if count > 1 else ""
            if failed.get((run.workload, run.system), run.rep) < run.rep:
                # A failed run ends its system's repetitions: a hang would cost a timeout each.
                print(f"{label}: not run, run {failed[(run.workload, run.system)] + 1} failed")
                continue
            timeout = args.timeout or (QUICK_TIMEOUT_S if size == "quick" else workload.timeout_s)
            extra: dict[str, object] = {}
            if run.workload == "persist":
                if data is None:
                    data_dir = Path(args.data_dir) if args.data_dir else workdir
                    data_dir.mkdir(parents=True, exist_ok=True)
                    data = _prepare_data(int(run.params["n"]), data_dir)
                extra["path"] = str(data)
            print(f"{label} ...", end=" ", flush=True)
            start = time.perf_counter()
            if run.params.get("dashboard") and chromium_path() is None:
                outcome = Outcome(skipped=[INSTALL_HINT])
            else:
                outcome = execute(run, workdir, timeout, extra)
            print(f"[{time.perf_counter() - start:.1f} s] {_summary(outcome)}", flush=True)
            if outcome.errors and run.rep + 1 < count and (run.workload, run.system) not in failed:
                failed[(run.workload, run.system)] = run.rep
                left = count - run.rep - 1
                outcome.notes.append(f"failed, so the {left} later run(s) were not made")
            key = (run.workload, run.system, run.rep)
            per_run.setdefault(key, Outcome()).absorb(outcome, run.prefix)
    outcomes = merge_repetitions([WORKLOADS[name] for name in args.workloads], per_run)
    env["load average at end (1, 5, 15 min)"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    selected = [WORKLOADS[name] for name in args.workloads]
    print()
    print(markdown_table(HEADER, table_rows(selected, outcomes)))
    for line in reference_lines(selected, outcomes):
        print(line)
    if not args.no_write:
        command = "python -m benchmarks" + ("" if not argv else " " + shlex.join(argv))
        out = Path(args.output)
        kept = kept_sections(out.read_text()) if out.exists() else ""
        text = results_markdown(selected, outcomes, env, command, size, args.repeat)
        out.write_text(text + kept)
        print(f"\nwrote {args.output}")
    return 0
