"""The client's task tokens are dask's ``tokenize``, computed faster for plain arguments."""

from __future__ import annotations

import random
import uuid

import numpy as np
from dask.base import tokenize

from shoal.client._submit import _uuid4_hex
from shoal.client._tokens import call_tokens, token


def _plain(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(10 if depth < 3 else 6)
    if kind == 0:
        return rng.randint(-10**20, 10**20)
    if kind == 1:
        return rng.random() * 10 ** rng.randint(-5, 20)
    if kind == 2:
        return "".join(rng.choice("ab'\"\\é-,() ") for _ in range(rng.randrange(6)))
    if kind == 3:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(5)))
    if kind == 4:
        return rng.choice([None, True, False, 0, 1, 0.0, float("inf"), float("nan")])
    if kind == 5:
        return rng.randrange(3)
    if kind == 6:
        return tuple(_plain(rng, depth + 1) for _ in range(rng.randrange(4)))
    if kind == 7:
        return [_plain(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = [rng.choice(["a", "b", 1, 2.5, None, ("t",)]) for _ in range(rng.randrange(4))]
    return {k: _plain(rng, depth + 1) for k in keys}


def test_token_equals_dask_tokenize_for_plain_arguments() -> None:
    rng = random.Random(14)
    for _ in range(3_000):
        args = tuple(_plain(rng) for _ in range(rng.randrange(5)))
        assert token(*args) == tokenize(*args), args


def test_call_tokens_equal_dask_tokenize_of_each_call() -> None:
    rng = random.Random(15)
    calls = [tuple(_plain(rng) for _ in range(rng.randrange(1, 4))) for _ in range(2_000)]
    calls += [(1,), (True,), (None,), (2.5, "x"), ("é'\"",), (b"\x00",), (np.int64(3),),
              (1, np.arange(3)), ({"a": 1},), ([1, (2, 3)],)]
    lead = tokenize("f", {})
    assert call_tokens(lead, calls) == [tokenize(lead, *args) for args in calls]


def test_call_tokens_take_any_lead() -> None:
    assert call_tokens(("t", 1), [(1,), ("a", 2)]) == [tokenize(("t", 1), 1),
                                                       tokenize(("t", 1), "a", 2)]


def test_token_equals_dask_tokenize_for_other_arguments() -> None:
    class Odd(int):
        def __dask_tokenize__(self) -> object:
            return "odd"

    cases = [
        ("f", np.arange(5)),
        ("f", Odd(3)),
        ("f", {1, 2}),
        ("f", [[[[1]]]]),  # deeper than normalized here: dask's own
        ("f", {"a": [np.float64(1.5)]}),
        ("f", 1 + 2j),
    ]
    for args in cases:
        assert token(*args) == tokenize(*args), args


def test_equal_plain_arguments_give_equal_tokens_and_different_ones_differ() -> None:
    assert token("fid", 1, "x") == token("fid", 1, "x")
    assert token("fid", 1) != token("fid", 1.0)
    assert token("fid", 1) != token("fid", True)
    assert token("fid", (1, 2)) != token("fid", [1, 2])


def test_impure_key_suffix_is_a_fresh_version_4_uuid_hex_as_dask_makes() -> None:
    seen = set()
    for _ in range(2000):
        suffix = _uuid4_hex()
        parsed = uuid.UUID(suffix)
        assert parsed.hex == suffix and len(suffix) == 32
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        seen.add(suffix)
    assert len(seen) == 2000
