"""Preload modules (``--preload``, dask's "Customizing initialization"): how a module or
file is found, when ``dask_setup``/``dask_teardown`` run, and how failures read."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import dask
import pytest

from shoal._preload import PreloadError, configured_preloads, load_preloads, normalize


class Server:
    def __init__(self) -> None:
        self.calls: list[Any] = []


def _module(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_setup_and_teardown_get_the_server_and_may_be_coroutines(tmp_path):
    path = _module(tmp_path, "pre_both", """
        def dask_setup(server):
            server.calls.append("setup")

        async def dask_teardown(server):
            server.calls.append("teardown")
    """)
    server = Server()
    preloads = load_preloads([path])

    async def run() -> None:
        await preloads.setup(server)
        assert server.calls == ["setup"]
        await preloads.teardown()
        await preloads.teardown()  # once only

    asyncio.run(run())
    assert server.calls == ["setup", "teardown"]


def test_a_module_name_is_imported(tmp_path, monkeypatch):
    _module(tmp_path, "pre_by_name", """
        async def dask_setup(server):
            server.calls.append(__name__)
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    server = Server()
    asyncio.run(load_preloads("pre_by_name").setup(server))
    assert server.calls == ["pre_by_name"]


def test_setups_run_in_order_and_teardowns_in_reverse(tmp_path):
    paths = [_module(tmp_path, f"pre_order_{i}", f"""
        def dask_setup(server):
            server.calls.append(("setup", {i}))

        def dask_teardown(server):
            server.calls.append(("teardown", {i}))
    """) for i in range(2)]
    server = Server()
    preloads = load_preloads(paths)

    async def run() -> None:
        await preloads.setup(server)
        await preloads.teardown()

    asyncio.run(run())
    assert server.calls == [("setup", 0), ("setup", 1), ("teardown", 1), ("teardown", 0)]


def test_a_failing_setup_fails_with_the_module_and_the_error_and_tears_down_the_others(tmp_path):
    good = _module(tmp_path, "pre_good", """
        def dask_setup(server):
            server.calls.append("good setup")

        def dask_teardown(server):
            server.calls.append("good teardown")
    """)
    bad = _module(tmp_path, "pre_bad", """
        def dask_setup(server):
            raise ValueError("no credentials found")
    """)
    server = Server()
    with pytest.raises(PreloadError, match=r"pre_bad\.py.*dask_setup raised ValueError: "
                                           r"no credentials found") as info:
        asyncio.run(load_preloads([good, bad]).setup(server))
    assert isinstance(info.value.__cause__, ValueError)
    assert server.calls == ["good setup", "good teardown"]


def test_a_missing_file_or_module_fails_at_load_naming_it(tmp_path):
    with pytest.raises(PreloadError, match="no such file"):
        load_preloads([str(tmp_path / "absent.py")])
    with pytest.raises(PreloadError, match="'no_such_preload_module' could not be imported: "
                                           "ModuleNotFoundError"):
        load_preloads("no_such_preload_module")


def test_a_module_that_raises_on_import_fails_at_load(tmp_path):
    path = _module(tmp_path, "pre_import_error", "raise RuntimeError('broken at import')\n")
    with pytest.raises(PreloadError, match="could not be imported: RuntimeError: broken"):
        load_preloads([path])


def test_web_addresses_are_refused_with_the_fix():
    with pytest.raises(PreloadError, match="give its path"):
        load_preloads("https://example.com/setup.py")


def test_a_failing_teardown_is_logged_not_raised(tmp_path, caplog):
    path = _module(tmp_path, "pre_bad_teardown", """
        def dask_teardown(server):
            raise OSError("disk gone")
    """)
    preloads = load_preloads([path])

    async def run() -> None:
        await preloads.setup(Server())
        await preloads.teardown()

    asyncio.run(run())
    assert "dask_teardown failed" in caplog.text


def test_a_click_command_setup_gets_the_arguments(tmp_path):
    pytest.importorskip("click")
    path = _module(tmp_path, "pre_click", """
        import click

        @click.command()
        @click.option("--vector", type=int, default=1)
        def dask_setup(server, vector):
            server.calls.append(vector)
    """)
    server = Server()
    asyncio.run(load_preloads([path], ["--vector", "3"]).setup(server))
    assert server.calls == [3]


def test_arguments_for_a_setup_that_takes_none_are_refused(tmp_path):
    path = _module(tmp_path, "pre_plain", "def dask_setup(server):\n    pass\n")
    with pytest.raises(PreloadError, match=r"arguments \['--vector', '3'\].*takes none"):
        load_preloads([path], ["--vector", "3"])


def test_argument_lists_are_one_for_all_or_one_per_module():
    assert normalize(["a", "b"], ["-x"]) == [("a", ["-x"]), ("b", ["-x"])]
    assert normalize(["a", "b"], [["-x"], []]) == [("a", ["-x"]), ("b", [])]
    assert normalize("a") == [("a", [])]
    with pytest.raises(ValueError, match="one list per module"):
        normalize(["a", "b"], [["-x"]])


def test_preloads_come_from_dasks_config_when_none_are_given(tmp_path):
    path = _module(tmp_path, "pre_config", "def dask_setup(server):\n    pass\n")
    with dask.config.set({"distributed.scheduler.preload": [path]}):
        assert [p.name for p in configured_preloads("scheduler").preloads] == [path]
        assert len(configured_preloads("worker")) == 0
