"""The optional compiled scheduler (mypyc): the build backend's switch and module list,
``shoal --version``'s report of the build, and what the compiled build needs of the rest
(the GC keeper watches the scheduler's tasks without a weak reference to its state). The
compiled build itself is built and tested by ``make test-compiled`` (part of make test)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from _compiled import listed_modules

from shoal._gc import GcKeeper, GcSettings
from shoal.cluster.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _backend() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "shoal_build", ROOT / "build_backend" / "shoal_build.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_shoal_version_names_the_scheduler_build(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == (
        "shoal 0.1.0 (scheduler state machine: pure Python)")


def test_the_default_build_is_pure_python_and_shoal_mypyc_1_compiles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = _backend()
    for value, compiled in (("", False), ("0", False), ("1", True)):
        monkeypatch.setenv("SHOAL_MYPYC", value)
        assert backend.wanted() is compiled
        if compiled:
            assert any(r.startswith("mypy>") for r in backend.get_requires_for_build_wheel())
    monkeypatch.delenv("SHOAL_MYPYC")
    assert backend.wanted() is False


def test_an_unknown_shoal_mypyc_value_is_refused_with_the_values_it_takes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHOAL_MYPYC", "yes")
    with pytest.raises(ValueError, match=r"SHOAL_MYPYC='yes': set it to 1 .* or leave it unset"):
        _backend().wanted()


def test_an_editable_install_asked_to_compile_says_to_install_without_e(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.setenv("SHOAL_MYPYC", "1")
    with pytest.raises(ValueError, match=r"pip install \.` \(not -e\)"):
        _backend().build_editable(str(tmp_path))


def test_the_build_compiles_the_modules_pyproject_lists_and_each_exists() -> None:
    names = _backend().modules(ROOT)
    assert names == listed_modules()
    assert "shoal.scheduler._state" in names
    for name in names:
        assert (ROOT / Path(*name.split("."))).with_suffix(".py").is_file(), name


class _NoWeakrefs:
    """Like a compiled SchedulerState: no ``__weakref__`` slot."""

    __slots__ = ("tasks",)

    def __init__(self, n: int) -> None:
        self.tasks = dict.fromkeys(range(n))


class _Server:
    def __init__(self, state: _NoWeakrefs) -> None:
        self.state = state


def test_the_gc_keeper_counts_tasks_of_a_state_that_takes_no_weak_references() -> None:
    k = GcKeeper(GcSettings(), hook=False)
    server = _Server(_NoWeakrefs(7))
    with pytest.raises(TypeError):
        k.watch(server.state, "tasks")  # what the scheduler server watched before
    k.watch(server, "state.tasks")
    assert k.held() == 7
    server.state.tasks[100] = None
    assert k.held() == 8
