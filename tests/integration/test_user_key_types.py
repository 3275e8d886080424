"""A key that is not a dask key, given to submit, map, get or compute, is a TypeError at the
call, as in dask.distributed, and nothing is sent (before: a bytes key ran, a tuple key
holding None ran, an object key failed in the message encoder). On the session client."""

from __future__ import annotations

import dask
import pytest

from shoal import Client


def inc(x: int) -> int:
    return x + 1


def test_submit_refuses_a_bytes_key_at_the_call(client: Client) -> None:
    with pytest.raises(TypeError, match=r"Unexpected key type bytes .*key='user-key-b'"):
        client.submit(inc, 1, key=b"user-key-b")
    assert b"user-key-b" not in client._states


def test_map_refuses_a_bad_key_in_its_list_and_sends_none(client: Client) -> None:
    with pytest.raises(TypeError, match=r"index 1 .*map"):
        client.map(inc, [1, 2], key=["user-key-m0", ("user-key-m1", None)])
    assert "user-key-m0" not in client._states
    with pytest.raises(TypeError, match="str prefix"):
        client.map(inc, [1, 2], key=object())


def test_get_refuses_a_bad_requested_key(client: Client) -> None:
    with pytest.raises(TypeError, match=r"Unexpected key type bytes .*Client\.get"):
        client.get({"user-key-g": 1}, b"user-key-g")


def test_compute_refuses_a_delayed_with_a_bad_key_name(client: Client) -> None:
    value = dask.delayed(inc)(1, dask_key_name=True)
    with pytest.raises(TypeError, match=r"Unexpected key type bool .*compute"):
        client.compute(value)


def test_tuple_and_number_keys_still_run(client: Client) -> None:
    assert client.submit(inc, 1, key=("user-key-t", 0)).result() == 2
    assert client.gather(client.map(inc, [1, 2], key=[7001, 7002.5])) == [2, 3]
