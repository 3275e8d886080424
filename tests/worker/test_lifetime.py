"""A worker's lifetime (``shoal worker --lifetime``): the staggered duration each worker
process gets, and the config it comes from (dask's ``distributed.worker.lifetime.*``)."""

from __future__ import annotations

import random

import dask
import pytest

from shoal.worker._lifetime import configured_lifetime, staggered


def test_a_lifetime_without_stagger_is_the_duration():
    assert staggered(60.0, 0.0, random.Random(1)) == 60.0


def test_staggered_lifetimes_stay_within_the_stagger_and_differ():
    rng = random.Random(7)
    values = [staggered(60.0, 10.0, rng) for _ in range(200)]
    assert all(50.0 <= v <= 70.0 for v in values)
    assert len(set(values)) > 100  # workers started together leave at different times
    assert min(values) < 55 and max(values) > 65  # both directions


def test_a_stagger_wider_than_the_lifetime_never_gives_a_negative_one():
    rng = random.Random(3)
    assert all(staggered(1.0, 5.0, rng) >= 0.0 for _ in range(100))


def test_a_negative_lifetime_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="must not be negative"):
        staggered(-1.0, 0.0, random.Random(0))


def test_the_lifetime_comes_from_dasks_config_when_not_given():
    with dask.config.set({"distributed.worker.lifetime.duration": "1 minute",
                          "distributed.worker.lifetime.stagger": "5s",
                          "distributed.worker.lifetime.restart": True}):
        assert configured_lifetime() == (60.0, 5.0, True)


def test_dasks_default_config_means_no_lifetime():
    assert configured_lifetime() == (None, 0.0, False)


def test_given_values_win_over_the_config():
    with dask.config.set({"distributed.worker.lifetime.duration": "1 minute",
                          "distributed.worker.lifetime.restart": True}):
        assert configured_lifetime("2 hours", 0, False) == (7200.0, 0.0, False)


def test_a_lifetime_that_is_not_a_duration_names_the_setting():
    with pytest.raises(ValueError, match=r"distributed\.worker\.lifetime\.duration.*'soon'"):
        configured_lifetime("soon")
