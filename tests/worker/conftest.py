"""Fixtures for the pure worker tests: a fresh state whose invariants are checked at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shoal.worker._state import WorkerState


@pytest.fixture
def ws() -> Iterator[WorkerState]:
    state = WorkerState("tcp://me:1")
    yield state
    state.validate()
