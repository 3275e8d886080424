"""Ctrl-C in a program using a Client: the KeyboardInterrupt reaches the program promptly
wherever the main thread is (waiting on a result, building a graph, collecting garbage), the
client stays usable afterwards, and the program exits with no worker process left.

Each test runs a small program in a subprocess (signals go to the main thread of a process)
with a deadline; the program reports what it saw on stdout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from ._helpers import alive, wait_for

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


# Ctrl-C, a real SIGINT to the process, at seeded moments while the main thread waits in each
# blocking call of the API in turn (or builds and sends a graph): each interrupt must reach the
# program within a second, and the client must still compute afterwards.
_WAITS_PROGRAM = """
    import os, random, signal, threading, time
    import dask.array as da
    import shoal
    from shoal import as_completed, wait

    def slowinc(x, t=0.05):
        time.sleep(t)
        return x + 1

    def inc(x):
        return x + 1

    KINDS = ["result", "gather", "wait", "as_completed", "compute", "persist", "get",
             "scatter", "map", "submit"]

    def block(client, kind, it):
        if kind == "result":
            client.submit(slowinc, 1, 0.5, pure=False).result()
        elif kind == "gather":
            client.gather(client.map(slowinc, range(20), pure=False))
        elif kind == "wait":
            wait(client.map(slowinc, range(20), pure=False))
        elif kind == "as_completed":
            for f in as_completed(client.map(slowinc, range(20), pure=False)):
                f.result()
        elif kind == "compute":
            da.ones((600, 600), chunks=(20, 20)).map_blocks(lambda b: b + 1).sum().compute()
        elif kind == "persist":
            (da.ones((1000, 1000), chunks=(20, 20)) + it).persist()
        elif kind == "get":
            client.get({"g": (slowinc, 1, 0.2)}, "g")
        elif kind == "scatter":
            client.scatter(list(range(200)))
        elif kind == "map":
            client.map(inc, range(3000), pure=False)
        elif kind == "submit":
            [client.submit(inc, i, pure=False) for i in range(500)]

    rng = random.Random(0)
    with shoal.Client(n_workers=2, threads_per_worker=2, dashboard_address=None) as client:
        print("workers", sorted(client.run(os.getpid).values()), flush=True)
        for it in range(40):
            kind = KINDS[it % len(KINDS)]
            sent = []
            def interrupt():
                sent.append(time.monotonic())
                os.kill(os.getpid(), signal.SIGINT)
            timer = threading.Timer(rng.uniform(0, 0.3), interrupt)
            try:
                timer.start()
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:  # ends: the interrupt or the deadline
                    block(client, kind, it)
                print("not interrupted", it, kind, flush=True)
            except KeyboardInterrupt:
                took = time.monotonic() - sent[0]
                if took > 1.0:
                    print("late", it, kind, round(took, 2), flush=True)
            timer.join(10)
        print("after", client.submit(inc, 1).result(timeout=60), flush=True)
    print("closed", flush=True)
"""


def _worker_pids(stdout: str) -> list[int]:
    line = next(line for line in stdout.splitlines() if line.startswith("workers "))
    return [int(pid) for pid in line[len("workers ["):-1].split(", ")]


def test_ctrl_c_in_every_blocking_call_arrives_promptly_and_the_client_stays_usable(tmp_path):
    done = _run(tmp_path, _WAITS_PROGRAM, timeout=240)
    report = (done.stdout, done.stderr[-3000:])
    assert done.returncode == 0, report
    assert "not interrupted" not in done.stdout, report
    assert "late" not in done.stdout, report
    assert "after 2\nclosed\n" in done.stdout, report
    pids = _worker_pids(done.stdout)
    wait_for(lambda: not any(alive(pid) for pid in pids), timeout=20)


_STARTUP_PROGRAM = """
    import sys, threading, time
    import shoal

    print("starting", flush=True)
    began = time.monotonic()
    try:
        client = shoal.Client(n_workers=2, threads_per_worker=1, dashboard_address=None)
        print("started", flush=True)
        client.close()
        try:  # start-up won the race: take the test's SIGINT here, not at exit
            time.sleep(30)  # ends: the test's SIGINT, or 30 s
        except KeyboardInterrupt:
            pass
    except KeyboardInterrupt:
        print("interrupted after", round(time.monotonic() - began, 2), flush=True)
    left = [t.name for t in threading.enumerate()
            if not t.daemon and t is not threading.main_thread()]
    print("non-daemon threads", left, flush=True)
"""


@pytest.mark.parametrize("delay", [0.5, 1.5])
def test_ctrl_c_during_client_start_up_leaves_no_worker_process(tmp_path, delay):
    path = tmp_path / "program.py"
    path.write_text(textwrap.dedent(_STARTUP_PROGRAM))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), PYTHONFAULTHANDLER="1")
    proc = subprocess.Popen([sys.executable, str(path)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "starting\n"  # ends: the line, or the kill below
        wait_for(lambda: psutil.Process(proc.pid).children(recursive=True), timeout=60)
        started = time.monotonic()
        wait_for(lambda: time.monotonic() - started >= delay, timeout=delay + 1)
        children = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, (out, err[-3000:])
    if "interrupted after" in out:  # (a fast start-up may finish first: nothing to check)
        assert "non-daemon threads []" in out, (out, err[-3000:])
    wait_for(lambda: not any(alive(pid) for pid in children), timeout=20)


# The interrupt due at the first bytecode of ``Future.__del__`` (a finalizer: CPython drops
# what it raises) must still reach the program, and the dying future must still give back its
# reference: else its key stays held on the cluster for as long as the client lives.
_DEL_PROGRAM = """
    import _thread, gc, random, threading, time
    import shoal
    from shoal import Future

    def inc(x):
        return x + 1

    rng = random.Random(0)
    lost = 0
    with shoal.Client(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as client:
        held = client.submit(inc, 1)
        held.result(timeout=60)
        for _ in range(100):
            deadline = time.monotonic() + 2
            try:
                threading.Timer(rng.uniform(0, 0.005), _thread.interrupt_main).start()
                while time.monotonic() < deadline:  # ends: the interrupt or the deadline
                    for _ in range(100):
                        Future(held.key, client)  # made and dropped at once
                lost += 1
            except KeyboardInterrupt:
                pass
        print("lost", lost, flush=True)
        key = held.key
        del held
        gc.collect()
        deadline = time.monotonic() + 30
        while key in client._held_keys() and time.monotonic() < deadline:  # ends: deadline
            time.sleep(0.05)
        print("still held", key in client._held_keys(), flush=True)
"""


def test_ctrl_c_in_a_dying_futures_finalizer_is_not_lost_and_the_key_is_released(tmp_path):
    done = _run(tmp_path, _DEL_PROGRAM)
    assert done.returncode == 0, (done.stdout, done.stderr[-3000:])
    assert "lost 0\nstill held False\n" in done.stdout, (done.stdout, done.stderr[-3000:])


def test_ctrl_c_as_a_submit_wakes_the_loop_does_not_silence_the_client(client, monkeypatch):
    """The interrupt is due at the first bytecode of a Python function: here, the one that
    hands the client's drain to the loop. The client marked a drain as scheduled before that
    call and nothing ever cleared the mark: no later message was sent."""
    import shoal._loop

    def inc(x):
        return x + 1

    real = shoal._loop.call_soon

    def interrupted(*args):
        monkeypatch.setattr(shoal._loop, "call_soon", real)
        raise KeyboardInterrupt

    wait_for(lambda: not client._drain_scheduled, timeout=30)
    monkeypatch.setattr(shoal._loop, "call_soon", interrupted)
    with pytest.raises(KeyboardInterrupt):
        client.submit(inc, 1, pure=False)
    assert client.submit(inc, 2, pure=False).result(timeout=30) == 3


def test_ctrl_c_as_a_submit_queues_its_message_does_not_lose_the_functions_blob(
        client, monkeypatch):
    """A new function travels once, with the first message that needs it; the client marks it
    sent as that message is queued. An interrupt between the mark and the queueing (here, as
    the message is made) left it marked and never sent: every later task of it failed."""
    import shoal.client._submit as submit_module

    namespace: dict[str, object] = {}
    exec("def add_eleven(x):\n    return x + 11", namespace)  # a function new to all
    func = namespace["add_eleven"]
    real = submit_module.UpdateGraph

    def interrupted(*args, **kwargs):
        monkeypatch.setattr(submit_module, "UpdateGraph", real)
        raise KeyboardInterrupt

    monkeypatch.setattr(submit_module, "UpdateGraph", interrupted)
    with pytest.raises(KeyboardInterrupt):
        client.submit(func, 1, pure=False)
    assert client.submit(func, 2, pure=False).result(timeout=30) == 13


# Ctrl-C under ``asyncio.run(main())`` while ``main`` waits in a blocking Client call: since
# Python 3.11 asyncio's SIGINT handler only cancels the main task, which cannot see that
# while its thread is blocked: the wait must notice the cancellation (polled every 0.1 s),
# and asyncio.run then raises KeyboardInterrupt. Each blocking call in turn, on one client.
_ASYNCIO_RUN_PROGRAM = """
    import asyncio, os, signal, threading, time
    import shoal

    def slow(x):
        time.sleep(3)
        return x

    def sleepy():
        time.sleep(3)

    KINDS = ["result", "gather", "wait", "run"]

    async def main(client, kind, sent):
        threading.Timer(0.2, lambda: (sent.append(time.monotonic()),
                                      os.kill(os.getpid(), signal.SIGINT))).start()
        if kind == "result":
            client.submit(slow, 1, pure=False).result()
        elif kind == "gather":
            client.gather([client.submit(slow, 2, pure=False)])
        elif kind == "wait":
            shoal.wait([client.submit(slow, 3, pure=False)])
        elif kind == "run":
            client.run(sleepy)

    with shoal.Client(n_workers=1, threads_per_worker=4, processes=False,
                      dashboard_address=None) as client:
        for kind in KINDS:
            sent = []
            try:
                asyncio.run(main(client, kind, sent))
                print("not interrupted", kind, flush=True)
            except KeyboardInterrupt:
                print(kind, "took", round(time.monotonic() - sent[0], 2), flush=True)
        print("after", client.submit(abs, -2).result(timeout=60), flush=True)
"""


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.run's SIGINT handler is 3.11's")
def test_ctrl_c_under_asyncio_run_reaches_a_blocking_call_promptly(tmp_path):
    done = _run(tmp_path, _ASYNCIO_RUN_PROGRAM)
    report = (done.stdout, done.stderr[-3000:])
    assert done.returncode == 0, report
    took = {line.split()[0]: float(line.split()[2]) for line in done.stdout.splitlines()
            if " took " in line}
    assert set(took) == {"result", "gather", "wait", "run"}, report
    assert max(took.values()) < 1.0, report  # not the 3 s of the task
    assert "after 2\n" in done.stdout, report


# The kernel hands a process's SIGINT to any thread that does not block it when the main
# thread has a signal pending already (a SIGCHLD from a worker process): Python's handler then
# runs only once the main thread is back in bytecode, so a main thread blocked in an untimed
# wait would not see the Ctrl-C until the wait ended. Here the signal goes to another thread
# on purpose, while the main thread waits in each blocking call on a task held until the end.
_OTHER_THREAD_PROGRAM = """
    import signal, threading, time
    import shoal
    from shoal import Event, Lock, Queue, Semaphore, Variable, as_completed, wait

    def held(t):
        return Event("go").wait(60) and t

    with shoal.Client(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as client:
        slow = client.submit(held, 0, pure=False)
        taken = Lock("held")
        taken.acquire()
        full = Semaphore(max_leases=1, name="full")
        full.acquire()
        waits = {
            "result": lambda: slow.result(),
            "gather": lambda: client.gather([slow]),
            "wait": lambda: wait([slow]),
            "as_completed": lambda: next(iter(as_completed([slow]))),
            "get": lambda: client.get({"s": (held, 1)}, "s"),
            "lock": lambda: Lock("held").acquire(),
            "semaphore": lambda: Semaphore(max_leases=1, name="full").acquire(),
            "queue": lambda: Queue("empty").get(),
            "event": lambda: Event("unset").wait(),
            "variable": lambda: Variable("unset").get(),
        }
        parked = threading.Event()
        other = threading.Thread(target=parked.wait, args=(600,), daemon=True)
        other.start()
        for name, blocking in waits.items():
            timer = threading.Timer(0.2, signal.pthread_kill, (other.ident, signal.SIGINT))
            began = time.monotonic()
            timer.start()
            try:
                blocking()
                print("not interrupted", name, flush=True)
            except KeyboardInterrupt:
                print("interrupted", name, round(time.monotonic() - began - 0.2, 2),
                      flush=True)
            timer.join(10)
        parked.set()
        Event("go").set()
        print("after", slow.result(timeout=60), flush=True)
    print("closed", flush=True)
"""


def test_ctrl_c_taken_by_another_thread_still_reaches_a_blocked_main_thread(tmp_path):
    done = _run(tmp_path, _OTHER_THREAD_PROGRAM, timeout=120)
    report = (done.stdout, done.stderr[-3000:])
    assert done.returncode == 0, report
    took = {line.split()[1]: float(line.split()[2]) for line in done.stdout.splitlines()
            if line.startswith("interrupted ")}
    assert set(took) == {"result", "gather", "wait", "as_completed", "get", "lock",
                         "semaphore", "queue", "event", "variable"}, report
    late = {name: t for name, t in took.items() if t > 1.0}
    assert not late, report
    assert "after 0\nclosed\n" in done.stdout, report


# Ctrl-C in a terminal (and Jupyter's "interrupt kernel") sends SIGINT to the whole foreground
# process group: the program's and, unless they are in a group of their own, its local
# cluster's worker processes too. The program catches its KeyboardInterrupt and goes on; its
# workers must not have noticed: same processes, a running task finishes, held data is there.
_GROUP_SIGINT_PROGRAM = """
    import os, signal, time
    import shoal

    def slow(x):
        time.sleep(2)
        return x

    with shoal.Client(n_workers=2, threads_per_worker=1, dashboard_address=None) as client:
        held = client.submit(lambda: 42, pure=False)
        held.result(timeout=60)
        pids = sorted(client.run(os.getpid).values())
        running = client.submit(slow, 1, pure=False)
        deadline = time.monotonic() + 30
        while not any(running.key in keys for keys in client.processing().values()):
            assert time.monotonic() < deadline, "the task never started"  # ends: deadline
            time.sleep(0.01)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # (this program's own Ctrl-C handled)
        os.killpg(os.getpgid(0), signal.SIGINT)
        print("running", running.result(timeout=60), flush=True)
        print("held", held.result(timeout=60), flush=True)
        print("same workers", sorted(client.run(os.getpid).values()) == pids, flush=True)
"""


def test_ctrl_c_to_the_programs_process_group_leaves_its_local_workers_alone(tmp_path):
    path = tmp_path / "program.py"
    path.write_text(textwrap.dedent(_GROUP_SIGINT_PROGRAM))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    # Its own process group, so the SIGINT reaches none of the test run's processes.
    done = subprocess.run([sys.executable, str(path)], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, start_new_session=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[:3] == ["running 1", "held 42", "same workers True"], (
        done.stdout, done.stderr[-3000:])
