"""The client's GC thresholds: raised from CPython's defaults, never over the user's own."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from shoal.client._client import _tune_gc


@pytest.fixture
def restore_gc_threshold() -> Iterator[None]:
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


@pytest.mark.usefixtures("restore_gc_threshold")
def test_default_gc_thresholds_are_raised_for_young_and_middle_generations() -> None:
    gc.set_threshold(700, 10, 10)
    _tune_gc()
    assert gc.get_threshold() == (20_000, 100, 10)


@pytest.mark.usefixtures("restore_gc_threshold")
def test_gc_thresholds_the_user_changed_are_left_alone() -> None:
    gc.set_threshold(5_000, 7, 3)
    _tune_gc()
    assert gc.get_threshold() == (5_000, 7, 3)


@pytest.mark.usefixtures("restore_gc_threshold")
def test_a_user_changed_middle_threshold_is_kept() -> None:
    gc.set_threshold(700, 50, 10)
    _tune_gc()
    assert gc.get_threshold() == (20_000, 50, 10)
