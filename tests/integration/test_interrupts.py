"""Ctrl-C in a program using a Client: the KeyboardInterrupt reaches the program promptly
wherever the main thread is (waiting on a result, building a graph, collecting garbage), the
client stays usable afterwards, and the program exits with no worker process left.

Each test runs a small program in a subprocess (signals go to the main thread of a process)
with a deadline; the program reports what it saw on stdout."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration


def _run(tmp_path, source: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "program.py"
    path.write_text(textwrap.dedent(source))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), PYTHONFAULTHANDLER="1")
    return subprocess.run([sys.executable, str(path)], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=tmp_path)


# The interrupt is simulated from a timer thread (``_thread.interrupt_main``: what a SIGINT's
# C handler does) at seeded moments while the main thread collects garbage in a loop: most of
# its time is in the collector, so most interrupts are due at the first bytecode of a
# ``gc.callbacks`` hook, where CPython prints "Exception ignored" and drops them.
_GC_PROGRAM = """
    import _thread, gc, random, threading, time
    import shoal

    def inc(x):
        return x + 1

    rng = random.Random(0)
    lost = 0
    with shoal.Client(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as client:
        for _ in range(100):
            deadline = time.monotonic() + 2
            try:
                threading.Timer(rng.uniform(0, 0.005), _thread.interrupt_main).start()
                while time.monotonic() < deadline:  # ends: the interrupt or the deadline
                    junk = [[] for _ in range(50)]
                    gc.collect(0)
                lost += 1
            except KeyboardInterrupt:
                pass
        print("lost", lost, flush=True)
        print("after", client.submit(inc, 1).result(timeout=60), flush=True)
    print("closed", flush=True)
"""


def test_ctrl_c_during_a_garbage_collection_is_not_lost(tmp_path):
    done = _run(tmp_path, _GC_PROGRAM)
    assert done.returncode == 0, (done.stdout, done.stderr[-3000:])
    assert "lost 0\n" in done.stdout, (done.stdout, done.stderr[-3000:])
    assert "after 2\nclosed\n" in done.stdout, (done.stdout, done.stderr[-3000:])
