"""Keys a user gives (``submit(key=)``, ``map(key=[...])``, ``get(dsk, keys)``) are dask keys
(``dask.typing.Key``: str, int, float, or tuples of those), or a TypeError says so at the
call, as dask.distributed's does (before: a bytes or bool key ran, a None inside a tuple
key ran, an object failed deep in the message encoder). No processes."""

from __future__ import annotations

from typing import Any

import dask.core
import numpy as np
import pytest

from shoal.client._keys import check_user_keys

GOOD = ["x", 1, 1.5, ("x", 0), ("x", 0, 1.5), ("x", ("y", 2)), ()]
BAD = [b"x", True, None, np.int64(3), object(), frozenset([1]), ("x", None), ("x", (b"y",))]


@pytest.mark.parametrize("key", GOOD, ids=repr)
def test_dask_keys_pass(key: Any) -> None:
    assert dask.core.iskey(key)  # (the spec: dask's own definition)
    check_user_keys([key], "submit")


@pytest.mark.parametrize("key", BAD, ids=lambda k: type(k).__name__)
def test_other_keys_are_a_type_error_naming_key_call_and_fix(key: Any) -> None:
    assert not dask.core.iskey(key)
    with pytest.raises(TypeError) as info:
        check_user_keys(["ok", key], "map(key=)")
    text = str(info.value)
    assert text.startswith("Unexpected key type")  # dask's words, for those who search them
    assert repr(key) in text and "map(key=)" in text
    assert "str, int, float" in text


def test_the_fix_suggested_for_bytes_is_the_decoded_string() -> None:
    with pytest.raises(TypeError, match="key='x'"):
        check_user_keys([b"x"], "submit")
    with pytest.raises(TypeError, match=r"index 1"):
        check_user_keys([("x", None)], "submit")
