"""Fixtures for the pure worker tests: a fresh state whose invariants are checked at the end,
and a spill buffer over a temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.worker._memory import MemoryLimits
from shoal.worker._spill import SpillBuffer
from shoal.worker._state import WorkerState

MB = 1_000_000


@pytest.fixture
def ws() -> Iterator[WorkerState]:
    state = WorkerState("tcp://me:1")
    yield state
    state.validate()


@pytest.fixture
def buf(tmp_path: Path) -> Iterator[SpillBuffer]:
    b = SpillBuffer(str(tmp_path), MemoryLimits.from_fractions(10 * MB))  # target 6 MB
    yield b
    b.policy.validate()
    b.close()
