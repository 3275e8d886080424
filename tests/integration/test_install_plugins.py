"""``InstallPlugin`` and ``CondaInstall`` (dask's installer plugins). conda is a fake script
on PATH in a temporary directory: nothing is installed and no network is used. The
workers are in this process (``processes=False``), so they see this test's PATH."""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal import Client, CondaInstall, InstallPlugin, LocalCluster, PipInstall


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with LocalCluster(n_workers=2, processes=False, threads_per_worker=1,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


def fake_conda(bin_dir: Path, log: Path, exit_code: int = 0) -> None:
    bin_dir.mkdir()
    script = bin_dir / "conda"
    script.write_text(f'#!/bin/sh\necho "$@" >> {log}\necho "conda said no" >&2\n'
                      f"exit {exit_code}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def test_conda_install_runs_conda_on_every_worker(client, tmp_path, monkeypatch):
    log = tmp_path / "calls"
    fake_conda(tmp_path / "bin", log)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    plugin = CondaInstall(["pkg-a", "pkg-b=1.0"], conda_options=["-c", "conda-forge"])
    assert isinstance(plugin, InstallPlugin) and plugin.name.startswith("CondaInstall-")
    client.register_plugin(plugin)
    assert log.read_text().splitlines() == ["install --yes -c conda-forge pkg-a pkg-b=1.0"] * 2


def test_a_failing_conda_is_reported_with_its_output(client, tmp_path, monkeypatch):
    fake_conda(tmp_path / "bin", tmp_path / "calls", exit_code=3)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(RuntimeError, match=r"(?s)conda install pkg-x failed \(exit 3\).*said no"):
        client.register_plugin(CondaInstall(["pkg-x"]))


def test_no_conda_says_what_to_do(client, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    monkeypatch.delenv("CONDA_EXE", raising=False)
    with pytest.raises(RuntimeError, match="found no conda"):
        client.register_plugin(CondaInstall(["pkg-x"]))


def test_install_plugin_runs_the_function_on_every_worker(client, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()

    def install() -> None:
        (marks / uuid.uuid4().hex).touch()

    client.register_plugin(InstallPlugin(install, restart_workers=False))
    assert len(list(marks.iterdir())) == 2
    assert issubclass(PipInstall, InstallPlugin)


def test_package_lists_and_functions_are_checked_at_once():
    with pytest.raises(TypeError, match="list of package names"):
        CondaInstall("numpy")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="function to run"):
        InstallPlugin("pip install x", restart_workers=False)  # type: ignore[arg-type]
