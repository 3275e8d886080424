"""dask's scheduler names "distributed" / "dask.distributed" resolve to shoal's client."""

from __future__ import annotations

import dask
import pytest

from shoal.client import _scheduler_names, _worker_client


def _no_client(*args, **kwargs):
    raise ValueError("no client")


def test_the_names_are_in_dasks_table():
    from dask.base import named_schedulers

    assert {"distributed", "dask.distributed"} <= set(named_schedulers)


def test_without_any_client_the_name_says_what_to_do(monkeypatch):
    monkeypatch.setattr(_worker_client, "get_client", _no_client)
    with pytest.raises(RuntimeError, match=r"no Client active.*shoal\.Client"):
        dask.compute(dask.delayed(int)(1), scheduler="distributed")


def test_install_leaves_a_name_someone_else_registered(monkeypatch):
    from dask import base

    mine = object()
    monkeypatch.setitem(base.named_schedulers, "dask.distributed", mine)
    _scheduler_names.install()
    assert base.named_schedulers["dask.distributed"] is mine
