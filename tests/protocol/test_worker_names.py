"""A worker's name on the wire (``Register.name``): every type dask carries comes back as it
went (a tuple as a tuple: batches are decoded with use_list=False); a peer's name that could
not key a lookup (holding a map) is the peer's ProtocolError."""

from __future__ import annotations

import pytest

from shoal.protocol._framing import decode, encode
from shoal.protocol._messages import ProtocolError, Register


def _round_trip(name: object) -> object:
    msg = Register("tcp://w:1", name, 1, 0, 1, "w")  # type: ignore[arg-type]
    (back,) = decode(encode([msg])[1:])
    assert isinstance(back, Register)
    return back.name


@pytest.mark.parametrize("name", ["w", b"w", True, 0, -3, 1.5, ("a", 1), ("t", (2, 3.5))])
def test_worker_names_of_dasks_types_come_back_of_the_same_type(name: object) -> None:
    back = _round_trip(name)
    assert back == name and type(back) is type(name)


def test_a_name_holding_a_map_is_the_peers_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="name"):
        _round_trip(("a", {"x": 1}))
