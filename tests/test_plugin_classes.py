"""Plugins as objects: which kind a plugin is, its name, and what the built-ins check in the
client before anything is sent (no processes)."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from shoal import Environ, NannyPlugin, PipInstall, SchedulerPlugin, UploadFile, WorkerPlugin
from shoal._plugin import plugin_kind, plugin_name
from shoal.worker._plugins import load_file


class MyWorkerPlugin(WorkerPlugin):
    pass


def test_kind_follows_the_base_class() -> None:
    assert plugin_kind(MyWorkerPlugin()) == "worker"
    assert plugin_kind(SchedulerPlugin()) == "scheduler"
    assert plugin_kind(Environ()) == "nanny"
    assert plugin_kind(UploadFile(__file__)) == "worker"


def test_plugins_written_against_dask_are_recognised_by_their_base_class() -> None:
    from distributed.diagnostics.plugin import NannyPlugin as DaskNanny
    from distributed.diagnostics.plugin import SchedulerPlugin as DaskScheduler
    from distributed.diagnostics.plugin import WorkerPlugin as DaskWorker

    class A(DaskWorker):
        pass

    class B(DaskScheduler):
        pass

    class C(DaskNanny):
        pass

    assert [plugin_kind(p) for p in (A(), B(), C())] == ["worker", "scheduler", "nanny"]


def test_dask_builtins_that_drive_dasks_servers_are_refused_naming_shoals(tmp_path: Path) -> None:
    # dask's own UploadFile/UploadDirectory/PipInstall call dask's Scheduler and Worker
    # methods; on shoal they failed on the workers (after pip had run) with an AttributeError.
    import distributed.diagnostics.plugin as dask_plugins

    mod = tmp_path / "m.py"
    mod.write_text("X = 1\n")
    refused = {
        "shoal.UploadFile": dask_plugins.UploadFile(str(mod)),
        "shoal.UploadDirectory": dask_plugins.UploadDirectory(str(tmp_path)),
        "shoal.PipInstall": dask_plugins.PipInstall(["toolz"]),
        "run_on_scheduler": dask_plugins.SchedulerUploadFile(str(mod)),
        "shoal.CondaInstall": dask_plugins.CondaInstall(["x"]),
    }
    for fix, plugin in refused.items():
        name = type(plugin).__name__
        with pytest.raises(TypeError, match=rf"distributed.diagnostics.plugin.{name}.*{fix}"):
            plugin_kind(plugin)

    class MyPip(dask_plugins.PipInstall):
        pass

    with pytest.raises(TypeError, match=r"shoal\.PipInstall"):
        plugin_kind(MyPip(["toolz"]))
    # The ones that only use the public worker interface still run.
    assert plugin_kind(dask_plugins.Environ({"A": "1"})) == "nanny"
    assert plugin_kind(dask_plugins.ForwardOutput()) == "worker"


def test_a_class_or_a_non_plugin_is_refused_with_the_fix() -> None:
    with pytest.raises(TypeError, match=r"call it: MyWorkerPlugin\(...\)"):
        plugin_kind(MyWorkerPlugin)
    with pytest.raises(TypeError, match="derive it from shoal's WorkerPlugin"):
        plugin_kind(object())


def test_names_come_from_the_argument_then_the_plugin_then_a_unique_one() -> None:
    assert plugin_name(MyWorkerPlugin(), "given") == "given"
    assert plugin_name(UploadFile(__file__), None) == "upload_file"
    a, b = plugin_name(MyWorkerPlugin(), None), plugin_name(MyWorkerPlugin(), None)
    assert a.startswith("MyWorkerPlugin-") and a != b
    with pytest.raises(TypeError, match="non-empty string"):
        plugin_name(MyWorkerPlugin(), "")


def test_upload_file_reads_and_checks_in_the_client(tmp_path: Path) -> None:
    good = tmp_path / "fine.py"
    good.write_text("X = 1\n")
    plugin = UploadFile(str(good))
    assert (plugin.filename, plugin.data) == ("fine.py", b"X = 1\n")
    (tmp_path / "bad.py").write_text("def f(:\n")
    with pytest.raises(SyntaxError):
        UploadFile(str(tmp_path / "bad.py"))
    (tmp_path / "fake.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a zip archive"):
        UploadFile(str(tmp_path / "fake.zip"))
    with pytest.raises(FileNotFoundError, match="no file"):
        UploadFile(str(tmp_path / "absent.py"))


def test_environ_keeps_strings_and_is_a_restarting_nanny_plugin() -> None:
    env = Environ({"A": 1, "B": "x"})
    assert env.environ == {"A": "1", "B": "x"}
    assert isinstance(env, NannyPlugin) and env.restart


def test_pip_install_takes_a_list_of_packages() -> None:
    with pytest.raises(TypeError, match="list of package names"):
        PipInstall("numpy")  # type: ignore[arg-type]
    assert PipInstall(["a", "b"]).idempotent
    # Idempotent per instance: a second PipInstall is a new plugin, as in dask.
    assert PipInstall(["a"]).name != PipInstall(["a"]).name


def test_load_file_reloads_a_changed_module_and_reads_a_changed_zip(tmp_path: Path) -> None:
    mod = tmp_path / "shoal_h11_loadme.py"
    mod.write_text("V = 1\n")
    archive = tmp_path / "shoal_h11_bundle.zip"
    try:
        assert load_file(str(mod))[0].V == 1
        mod.write_text("V = 22\n")  # same size class, same second: must still be reloaded
        assert load_file(str(mod))[0].V == 22
        for value in (1, 2):
            with zipfile.ZipFile(archive, "w") as z:
                z.writestr("shoal_h11_zipmod.py", f"V = {value}\n")
            (loaded,) = load_file(str(archive))
            assert value == loaded.V
    finally:
        for name in ("shoal_h11_loadme", "shoal_h11_zipmod"):
            sys.modules.pop(name, None)
        for p in (str(tmp_path), str(archive)):
            while p in sys.path:
                sys.path.remove(p)


def test_hooks_of_the_base_classes_do_nothing() -> None:
    w: Any = WorkerPlugin()
    assert w.setup(None) is None and w.teardown(None) is None
    assert w.transition("k", "a", "b") is None
    s: Any = SchedulerPlugin()
    assert s.start(None) is None and s.close() is None


@pytest.mark.parametrize("name", ["SchedulerPlugin", "WorkerPlugin", "NannyPlugin"])
def test_base_classes_have_dasks_hooks_with_dasks_parameters(name: str) -> None:
    # A plugin written against dask's base class overrides these by name and is called
    # with these keywords: shoal's base class declares the same ones.
    import inspect

    import distributed.diagnostics.plugin as dask_plugin

    import shoal

    theirs, ours = getattr(dask_plugin, name), getattr(shoal, name)
    hooks = [m for m, v in vars(theirs).items() if callable(v) and not m.startswith("_")]
    assert hooks
    for hook in hooks:
        assert hasattr(ours, hook), f"{name}.{hook} is missing"
        want = [(p.name, p.kind) for p in inspect.signature(getattr(theirs, hook)).parameters.values()]
        got = [(p.name, p.kind) for p in inspect.signature(getattr(ours, hook)).parameters.values()]
        assert got == want, f"{name}.{hook}"
    assert ours.idempotent is False
