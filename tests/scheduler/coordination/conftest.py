"""Fixtures for the pure coordination-machine tests: a fresh machine, validated at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shoal.scheduler.coordination import CoordinationState


@pytest.fixture
def coord() -> Iterator[CoordinationState]:
    st = CoordinationState()
    yield st
    st.validate()
