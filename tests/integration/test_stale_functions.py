"""Issue 9, item 3: a function sent by value (defined in a script or inside a function)
carries the values of its globals, closure and defaults *at submit time*. Changing one and
submitting again must run the new code, never return the result cached under the old key."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration

_scale = 2


def test_changed_global_gives_a_fresh_result(client) -> None:
    global _scale

    def scaled(x):
        return x * _scale

    _scale = 2
    assert client.submit(scaled, 10).result(timeout=20) == 20
    _scale = 3
    assert client.submit(scaled, 10).result(timeout=20) == 30
    assert client.map(scaled, [1, 2])[1].result(timeout=20) == 6


def test_changed_closure_gives_a_fresh_result(client) -> None:
    factor = 2

    def scaled(x):
        return x * factor

    assert client.submit(scaled, 10).result(timeout=20) == 20
    factor = 5
    assert client.submit(scaled, 10).result(timeout=20) == 50


def test_changed_helper_function_global_gives_a_fresh_result(client) -> None:
    global _scale

    def helper(x):
        return x * _scale

    def outer(x):
        return helper(x) + 1

    _scale = 2
    assert client.submit(outer, 10).result(timeout=20) == 21
    _scale = 4
    assert client.submit(outer, 10).result(timeout=20) == 41


def test_changed_defaults_give_a_fresh_result(client) -> None:
    def scaled(x, factor=2):
        return x * factor

    assert client.submit(scaled, 10).result(timeout=20) == 20
    scaled.__defaults__ = (7,)
    assert client.submit(scaled, 10).result(timeout=20) == 70
