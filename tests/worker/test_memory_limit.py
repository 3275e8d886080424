"""memory_limit as dask reads it (``parse_memory_limit``): auto, sizes, fractions, none."""

from __future__ import annotations

import pytest

from shoal.cluster._local import parse_memory_limit

TOTAL = 16 * 10**9


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, 0),
        (0, 0),
        ("0", 0),
        ("auto", TOTAL // 4),  # 1 thread of 4 cores
        ("4GB", 4 * 10**9),
        ("1GiB", 2**30),
        (0.5, TOTAL // 2),
        ("0.25", TOTAL // 4),
        (3 * 10**9, 3 * 10**9),
        ("100GB", TOTAL),  # never more than the machine has
    ],
)
def test_memory_limit_means_what_it_means_in_dask(value: object, expected: int) -> None:
    assert parse_memory_limit(value, 1, cores=4, total=TOTAL) == expected


def test_auto_gives_a_worker_its_share_of_the_cores() -> None:
    assert parse_memory_limit("auto", 2, cores=4, total=TOTAL) == TOTAL // 2
    assert parse_memory_limit("auto", 8, cores=4, total=TOTAL) == TOTAL


@pytest.mark.parametrize("value", ["lots", -1, [1], True])
def test_a_bad_memory_limit_says_what_is_accepted(value: object) -> None:
    with pytest.raises(ValueError, match="memory_limit"):
        parse_memory_limit(value, 1, cores=4, total=TOTAL)
