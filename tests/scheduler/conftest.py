"""Fixtures for the pure scheduler tests: a fresh state whose invariants are checked at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _compiled import check_build

from shoal.scheduler._state import SchedulerState

from ._sim import Sim

# Under make test's compiled step (SHOAL_EXPECT_COMPILED=1): stop at once if the compiled
# modules are not the ones imported.
check_build()


@pytest.fixture
def state() -> Iterator[SchedulerState]:
    st = SchedulerState()
    yield st
    st.validate()


@pytest.fixture
def sim(state: SchedulerState) -> Sim:
    """A driver for ``state`` with client ``c`` already joined (no workers yet)."""
    return Sim(state)
