"""Issue 11: ``upload_file``, ``register_plugin`` (worker, scheduler, nanny plugins) and the
built-in plugins on a real cluster; what is registered reaches restarted and new workers."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from shoal import (
    Client,
    Environ,
    InstallPlugin,
    NannyPlugin,
    PipInstall,
    SchedulerPlugin,
    UploadDirectory,
    WorkerPlugin,
    _loop,
)
from shoal.worker._nanny import Nanny

from ._helpers import wait_for

pytestmark = pytest.mark.integration


def _import_value(module: str) -> Any:
    import importlib

    return importlib.import_module(module).VALUE


def _kill_one_worker(c: Client) -> tuple[str, set[str]]:
    """SIGKILL one worker process; returns its address and the addresses before. Its
    nanny starts a fresh process, which registers as a new worker."""
    before = set(c.scheduler_info()["workers"])
    victim = sorted(before)[0]
    pid = c.run(os.getpid, workers=[victim])[victim]
    os.kill(pid, 9)
    wait_for(lambda: victim not in (now := set(c.scheduler_info()["workers"]))
             and len(now) == len(before), timeout=30)
    return victim, before


# --- upload_file ----------------------------------------------------------------------------


def test_uploaded_module_is_importable_in_tasks_on_every_worker(make_client: Any,
                                                                  tmp_path: Path) -> None:
    c = make_client(2)
    (tmp_path / "h11_upmod_a.py").write_text("VALUE = 'first'\n")
    answers = c.upload_file(str(tmp_path / "h11_upmod_a.py"))
    assert set(answers) == set(c.scheduler_info()["workers"])
    futs = [c.submit(_import_value, "h11_upmod_a", workers=[w], pure=False) for w in answers]
    assert c.gather(futs) == ["first", "first"]
    in_dir = c.run(lambda dask_worker: os.listdir(dask_worker.local_directory))
    assert all("h11_upmod_a.py" in names for names in in_dir.values())


def test_uploading_a_changed_module_again_reloads_it(make_client: Any, tmp_path: Path) -> None:
    c = make_client(1)
    path = tmp_path / "h11_upmod_b.py"
    path.write_text("VALUE = 1\n")
    c.upload_file(str(path))
    assert c.submit(_import_value, "h11_upmod_b", pure=False).result() == 1
    path.write_text("VALUE = 2\n")
    c.upload_file(str(path))
    assert c.submit(_import_value, "h11_upmod_b", pure=False).result() == 2


def test_uploaded_zip_of_modules_is_importable(make_client: Any, tmp_path: Path) -> None:
    c = make_client(1)
    archive = tmp_path / "h11_bundle.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("h11_zipped.py", "VALUE = 'zipped'\n")
    c.upload_file(str(archive))
    assert c.submit(_import_value, "h11_zipped", pure=False).result() == "zipped"


def test_upload_of_a_missing_file_raises_a_clear_error(client: Client) -> None:
    with pytest.raises(FileNotFoundError, match=r"no file .*nope\.py"):
        client.upload_file("/nonexistent/nope.py")


def test_upload_of_a_file_with_a_syntax_error_raises_and_reaches_no_worker(
        client: Client, tmp_path: Path) -> None:
    bad = tmp_path / "h11_broken.py"
    bad.write_text("VALUE = 1\ndef oops(:\n")
    with pytest.raises(SyntaxError) as info:
        client.upload_file(str(bad))
    assert info.value.lineno == 2
    listed = client.run(lambda dask_worker: os.listdir(dask_worker.local_directory))
    assert not any("h11_broken.py" in names for names in listed.values())


def test_upload_of_another_kind_of_file_is_refused(client: Client, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"\.py, \.zip, \.egg"):
        client.upload_file(str(tmp_path / "notes.txt"))


def test_uploaded_module_reaches_restarted_and_new_workers(make_client: Any,
                                                           tmp_path: Path) -> None:
    c = make_client(2)
    (tmp_path / "h11_upmod_c.py").write_text("VALUE = 'everywhere'\n")
    c.upload_file(str(tmp_path / "h11_upmod_c.py"))
    _kill_one_worker(c)
    nanny = Nanny(c.scheduler_address, name="late")
    _loop.run_sync(nanny.start(), 30)
    try:
        wait_for(lambda: len(c.scheduler_info()["workers"]) == 3, timeout=120)
        workers = list(c.scheduler_info()["workers"])
        futs = [c.submit(_import_value, "h11_upmod_c", workers=[w], pure=False) for w in workers]
        assert c.gather(futs) == ["everywhere"] * 3
    finally:
        _loop.run_sync(nanny.close(), 30)


# --- worker plugins -------------------------------------------------------------------------


class Recorder(WorkerPlugin):
    """Records its life on the worker, readable with client.run."""

    def __init__(self) -> None:
        self.log: list[Any] = []

    def setup(self, worker: Any) -> None:
        self.log.append(("setup",))

    def teardown(self, worker: Any) -> None:
        self.log.append(("teardown",))
        worker._h11_torn_down = list(self.log)  # the plugin is gone from worker.plugins

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        self.log.append((key, start, finish))


def _log(dask_worker: Any) -> Any:
    return list(dask_worker.plugins["recorder"].log)  # dask's Worker.plugins


def test_worker_plugin_setup_transitions_and_teardown(make_client: Any) -> None:
    c = make_client(1)
    answers = c.register_plugin(Recorder(), name="recorder")
    assert list(answers.values()) == [{"status": "OK"}]
    assert c.submit(sum, [1, 2], key="plugged").result() == 3
    wait_for(lambda: ("plugged", "executing", "memory") in next(iter(c.run(_log).values())))
    log = next(iter(c.run(_log).values()))
    assert log[0] == ("setup",)
    assert ("plugged", "released", "waiting") in log
    assert ("plugged", "waiting", "executing") in log
    c.unregister_worker_plugin("recorder")
    assert c.run(lambda dask_worker: "recorder" in dask_worker.plugins) == {w: False for w in answers}
    (torn,) = c.run(lambda dask_worker: dask_worker._h11_torn_down).values()
    assert torn[-1] == ("teardown",)
    with pytest.raises(ValueError, match="no worker plugin named 'recorder'"):
        c.unregister_worker_plugin("recorder")


class Counter(WorkerPlugin):
    idempotent = True
    name = "h11-counter"

    def setup(self, worker: Any) -> None:
        worker._h11_count = getattr(worker, "_h11_count", 0) + 1


def test_an_idempotent_plugin_is_set_up_once(client: Client) -> None:
    try:
        client.register_plugin(Counter())
        assert client.register_plugin(Counter()) == {}
        assert set(client.run(lambda dask_worker: dask_worker._h11_count).values()) == {1}
    finally:
        client.unregister_worker_plugin("h11-counter")


class Failing(WorkerPlugin):
    def setup(self, worker: Any) -> None:
        worker._h11_tried = os.getpid()
        _setup_helper_that_fails(worker.address)


def _setup_helper_that_fails(address: str) -> None:
    raise RuntimeError(f"setup cannot work on {address}")


def test_a_plugin_whose_setup_raises_reports_the_workers_traceback(client: Client) -> None:
    import traceback

    with pytest.raises(RuntimeError, match="setup cannot work on tcp://") as info:
        client.register_plugin(Failing(), name="h11-failing")
    text = "".join(traceback.format_exception(info.value))
    assert "_setup_helper_that_fails" in text  # the worker's frames
    assert "on worker tcp://" in text
    # Kept all the same, as dask keeps it (for workers to come): it can be unregistered.
    client.unregister_worker_plugin("h11-failing")


def test_a_plugin_whose_setup_raised_is_still_set_up_on_workers_that_join(
        make_client: Any) -> None:
    c = make_client(2)
    with pytest.raises(RuntimeError, match="setup cannot work on tcp://"):
        c.register_plugin(Failing(), name="h11-failing-kept")
    _kill_one_worker(c)  # its nanny starts a fresh process: a worker that joins
    tried = c.run(lambda dask_worker: getattr(dask_worker, "_h11_tried", None))
    assert tried == c.run(os.getpid)  # the new worker tried it too, and runs on
    assert c.submit(int, "7").result() == 7


def test_register_plugin_refuses_what_is_not_a_plugin_instance(client: Client) -> None:
    with pytest.raises(TypeError, match="not a plugin"):
        client.register_plugin(object())
    with pytest.raises(TypeError, match="instance, not the class"):
        client.register_plugin(Recorder)


class Marker(WorkerPlugin):
    name = "h11-marker"

    def setup(self, worker: Any) -> None:
        worker._h11_marked = os.getpid()


def test_worker_plugins_are_set_up_on_restarted_workers(make_client: Any) -> None:
    c = make_client(2)
    c.register_plugin(Marker())
    _kill_one_worker(c)
    marks = c.run(lambda dask_worker: getattr(dask_worker, "_h11_marked", None))
    pids = c.run(os.getpid)
    assert marks == pids


# --- scheduler plugins ----------------------------------------------------------------------


class Watcher(SchedulerPlugin):
    name = "h11-watcher"

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def start(self, scheduler: Any) -> None:
        self.seen.append(("start", len(scheduler.workers)))

    def update_graph(self, scheduler: Any, *, client: str, keys: set[Any], tasks: list[Any],
                     **kwargs: Any) -> None:
        self.seen.append(("update_graph", sorted(map(str, keys))))
        self.seen.append(("update_graph_by", client))

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        self.seen.append(("transition", key, start, finish))
        if "startstops" in kwargs:
            (ss,) = kwargs["startstops"]
            self.seen.append(("startstops", key, ss["action"], ss["start"] <= ss["stop"],
                              kwargs["worker"]))

    def add_worker(self, scheduler: Any, worker: str) -> None:
        self.seen.append(("add_worker", worker))

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        self.seen.append(("remove_worker", worker))

    def add_client(self, scheduler: Any, client: str) -> None:
        self.seen.append(("add_client",))
        self.seen.append(("add_client", client))

    def remove_client(self, scheduler: Any, client: str) -> None:
        self.seen.append(("remove_client",))
        self.seen.append(("remove_client", client))

    def log_event(self, topic: str, msg: Any) -> None:
        self.seen.append(("log_event", topic, msg))

    def close(self) -> None:
        self.seen.append(("close",))


def _seen(dask_scheduler: Any) -> list[Any]:
    return list(dask_scheduler.plugins["h11-watcher"].seen)


def test_scheduler_plugin_hooks_follow_the_cluster(make_client: Any) -> None:
    c = make_client(1)
    c.register_plugin(Watcher())
    assert c.submit(sum, [1, 1], key="watched").result() == 2
    c.log_event("h11-topic", {"n": 1})
    victim, _ = _kill_one_worker(c)
    other = Client(c.scheduler_address, set_as_default=False)
    other.close()
    wait_for(lambda: ("remove_client",) in c.run_on_scheduler(_seen))
    seen = c.run_on_scheduler(_seen)
    assert seen[0] == ("start", 1)
    assert ("update_graph", ["watched"]) in seen
    for move in (("released", "waiting"), ("processing", "memory")):
        assert any(e[:2] == ("transition", "watched") and e[2:] == move for e in seen), seen
    assert ("log_event", "h11-topic", {"n": 1}) in seen
    assert [e for e in seen if e[:2] == ("startstops", "watched")] == [
        ("startstops", "watched", "compute", True, victim)]
    assert ("remove_worker", victim) in seen
    assert any(e[0] == "add_worker" for e in seen)
    assert ("add_client",) in seen
    # Clients are named by their Client.id, as in dask (over TCP too, not by session).
    assert ("update_graph_by", c.id) in seen
    assert ("add_client", other.id) in seen and ("remove_client", other.id) in seen
    c.unregister_scheduler_plugin("h11-watcher")
    with pytest.raises(ValueError, match="no scheduler plugin"):
        c.unregister_scheduler_plugin("h11-watcher")


class BadStart(SchedulerPlugin):
    def start(self, scheduler: Any) -> None:
        raise KeyError("cannot start")


def test_a_scheduler_plugin_whose_start_raises_is_reported(client: Client) -> None:
    with pytest.raises(KeyError, match="cannot start"):
        client.register_plugin(BadStart(), name="h11-badstart")


# --- nanny plugins and the built-ins ----------------------------------------------------------


def _env() -> str | None:
    return os.environ.get("H11_ENVIRON")


def test_environ_sets_variables_before_worker_processes_start_and_keeps_them(
        make_client: Any) -> None:
    c = make_client(2)
    old = c.run(os.getpid)
    c.register_plugin(Environ({"H11_ENVIRON": 42}))
    assert set(c.run(_env).values()) == {"42"}
    assert not set(c.run(os.getpid).values()) & set(old.values())  # fresh processes
    assert c.submit(_env, pure=False).result() == "42"
    _kill_one_worker(c)
    assert set(c.run(_env).values()) == {"42"}


def test_an_installer_with_restart_workers_installs_once_then_restarts_the_worker(
        make_client: Any, tmp_path: Path) -> None:
    # dask installs on the nanny and restarts its worker, so that the new packages are
    # imported afresh; shoal ignored restart_workers (the old process kept old modules).
    c = make_client(1)
    (old,) = c.run(os.getpid).values()
    marks = tmp_path / "installed-in"
    marks.mkdir()

    def install() -> None:
        (marks / str(os.getpid())).touch()

    c.register_plugin(InstallPlugin(install, restart_workers=True))
    (new,) = c.run(os.getpid).values()
    assert new != old  # a fresh worker process
    assert os.listdir(marks) == [str(old)]  # installed once, not again by the fresh one
    _kill_one_worker(c)  # a process the nanny starts later does not install again either
    assert os.listdir(marks) == [str(old)]


class SetsEnvNoRestart(NannyPlugin):
    def setup(self, nanny: Any) -> None:
        nanny.env["H11_LATER"] = "yes"


def test_a_nanny_plugin_without_restart_applies_to_the_next_worker_process(
        make_client: Any) -> None:
    c = make_client(1)
    old = c.run(os.getpid)
    c.register_plugin(SetsEnvNoRestart(), name="h11:later,with separators")
    assert c.run(os.getpid) == old
    _kill_one_worker(c)
    assert list(c.run(lambda: os.environ.get("H11_LATER")).values()) == ["yes"]
    # The fresh process knows it was applied (and so does not apply it again).
    applied = c.run(lambda: json.loads(os.environ["SHOAL_NANNY_PLUGINS"]))
    assert list(applied.values()) == [["h11:later,with separators"]]


class MarksTeardown(NannyPlugin):
    def __init__(self, path: str) -> None:
        self.path = path

    def teardown(self, nanny: Any) -> None:
        with open(self.path, "a") as f:
            f.write(f"{nanny.name}\n")


def test_closing_the_cluster_tears_the_nanny_plugins_down(make_client: Any,
                                                            tmp_path: Path) -> None:
    # dask's Nanny.close runs its plugins' teardown; shoal's nanny ran none of them.
    c = make_client(2)
    marks = tmp_path / "torn-down"
    c.register_plugin(MarksTeardown(str(marks)), name="h11-teardown")
    _kill_one_worker(c)  # a worker process ending is not its nanny closing
    c.run(os.getpid)  # (after the plugin re-sent to the fresh process, on its connection)
    assert not marks.exists()
    c.cluster.close()
    assert sorted(marks.read_text().split()) == ["0", "1"]


class MarksTeardownWithSetupState(NannyPlugin):
    """Its teardown needs what its setup found (dask runs both on one instance)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.found: str | None = None

    def setup(self, nanny: Any) -> None:
        self.found = f"{nanny.name}-set-up"

    def teardown(self, nanny: Any) -> None:
        with open(os.path.join(self.directory, str(self.found)), "w") as f:
            f.write("torn down")


def test_a_nanny_whose_worker_process_is_gone_still_tears_its_plugins_down_as_it_closes(
        make_client: Any, tmp_path: Path) -> None:
    # dask runs nanny plugins in the nanny's process, so Nanny.close tears them down
    # whatever became of its worker. shoal runs them in the worker process: one that was
    # gone (retired, died for good) when its nanny closed took their teardown with it.
    c = make_client(1)
    nanny = Nanny(c.scheduler_address, name="late")
    _loop.run_sync(nanny.start(), 60)
    try:
        address = _loop.run_sync(nanny.worker_registered(), 60)
        c.register_plugin(MarksTeardownWithSetupState(str(tmp_path)), name="h11-gone")
        assert list(c.retire_workers([address])) == [address]
        wait_for(lambda: nanny.stopped, timeout=60)  # its process exited, not restarted
        assert not (tmp_path / "late-set-up").exists()
    finally:
        _loop.run_sync(nanny.close(), 60)
    assert (tmp_path / "late-set-up").read_text() == "torn down"


def test_upload_directory_is_importable_with_update_path(make_client: Any,
                                                         tmp_path: Path) -> None:
    c = make_client(1)
    project = tmp_path / "h11proj"
    (project / "h11pkg").mkdir(parents=True)
    (project / "h11pkg" / "__init__.py").write_text("VALUE = 'from a directory'\n")
    (project / "tests").mkdir()
    (project / "tests" / "skipped.py").write_text("")
    c.register_plugin(UploadDirectory(str(project), update_path=True))
    assert c.submit(_import_value, "h11pkg", pure=False).result() == "from a directory"
    names = c.run(lambda dask_worker: sorted(os.listdir(
        os.path.join(dask_worker.local_directory, "h11proj"))))
    assert list(names.values()) == [["h11pkg"]]


def _tiny_wheel(where: Path, name: str) -> Path:
    """A pure-Python wheel made by hand: pip installs it with --no-index, offline."""
    dist = f"{name}-0.1"
    files = {
        f"{name}.py": b"VALUE = 'pip installed'\n",
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n".encode(),
        f"{dist}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: h11\nRoot-Is-Purelib: true\n"
                                   b"Tag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = where / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    return wheel


def test_pip_install_installs_a_local_package_on_the_workers(make_client: Any,
                                                             tmp_path: Path) -> None:
    name = f"shoal_h11_tinypkg_{os.getpid()}"  # two test runs at once do not share it
    wheel = _tiny_wheel(tmp_path, name)
    c = make_client(1)
    try:
        c.register_plugin(PipInstall([str(wheel)], pip_options=["--no-index"]))
        assert c.submit(_import_value, name, pure=False).result() == "pip installed"
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", name],
                       capture_output=True, timeout=120)


def test_pip_install_failure_reports_pips_output(client: Client) -> None:
    with pytest.raises(RuntimeError, match=r"pip install .*failed"):
        client.register_plugin(PipInstall(["shoal-h11-no-such-package"],
                                          pip_options=["--no-index"]), name="h11-pip-fails")
