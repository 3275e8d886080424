"""A worker's resources as written on the command line and in dask's config."""

from __future__ import annotations

import argparse

import dask
import pytest

from shoal.cluster.cli import _parse_resources
from shoal.worker._resources import check_resources, format_resources, parse_resources


def test_command_line_form_parses_like_dask() -> None:
    assert parse_resources("GPU=2,MEM=10e9") == {"GPU": 2.0, "MEM": 1e10}
    assert parse_resources("GPU=1 TPU=0.5") == {"GPU": 1.0, "TPU": 0.5}
    assert parse_resources("") == {}


def test_formatted_resources_parse_back() -> None:
    res = {"GPU": 2.0, "MEM": 1e10, "odd": 0.1}
    assert parse_resources(format_resources(res)) == res


@pytest.mark.parametrize("bad", ["GPU", "GPU=", "=2", "GPU=-1", "GPU=lots"])
def test_malformed_resources_name_the_item_and_the_form(bad: str) -> None:
    with pytest.raises(ValueError, match="GPU=2,MEM=10e9"):
        parse_resources(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        _parse_resources(bad)


def test_resources_default_to_dask_config() -> None:
    assert check_resources(None) == {}
    with dask.config.set({"distributed.worker.resources": {"GPU": 1}}):
        assert check_resources(None) == {"GPU": 1.0}
    assert check_resources({"GPU": 2}) == {"GPU": 2.0}
    assert check_resources("MEM=4e9") == {"MEM": 4e9}
    with pytest.raises(ValueError, match="non-negative"):
        check_resources({"GPU": -1})
