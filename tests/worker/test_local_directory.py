"""Where a worker keeps its files: dask's rule, everything under ``local_directory`` (made
under the ``local_directory`` argument, else the ``temporary-directory`` config)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import dask
import pytest

from shoal.worker._server import Worker


def _inside(path: str, parent: str) -> bool:
    parent = os.path.realpath(parent)
    return os.path.commonpath([os.path.realpath(path), parent]) == parent


@pytest.fixture
def made() -> Iterator[list[Worker]]:
    workers: list[Worker] = []
    yield workers
    for w in workers:
        if w.plugin_host._directory is not None:
            shutil.rmtree(w.plugin_host._directory, ignore_errors=True)


def test_spill_files_and_uploads_go_under_the_workers_local_directory(tmp_path, made) -> None:
    w = Worker("tcp://127.0.0.1:1", memory_limit=10**9, local_directory=str(tmp_path))
    made.append(w)
    assert _inside(w.local_directory, str(tmp_path))
    store = w._data_store()
    assert _inside(store._directory(), w.local_directory)
    w.upload_file("a1_module_here.py", b"X = 1\n", load=False)
    assert os.path.exists(os.path.join(w.local_directory, "a1_module_here.py"))
    store.close()


def test_the_local_directory_follows_the_temporary_directory_config(tmp_path, made) -> None:
    with dask.config.set({"temporary-directory": str(tmp_path)}):
        w = Worker("tcp://127.0.0.1:1", memory_limit=10**9)
        made.append(w)
        assert _inside(w.local_directory, str(tmp_path))
        assert _inside(w._data_store()._directory(), w.local_directory)
