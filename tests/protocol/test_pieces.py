"""GetData replies in bounded pieces: splitting by size and putting the pieces together."""

from __future__ import annotations

from shoal.protocol._messages import Data
from shoal.protocol._pieces import DataPieces, split_by_size, whole
from shoal.protocol._serialize import Serialized


def test_keys_are_cut_into_runs_under_the_limit_in_order() -> None:
    sizes = {k: 10 for k in "abcdefg"}
    assert split_by_size(list("abcdefg"), sizes, 25) == [["a", "b"], ["c", "d"], ["e", "f"], ["g"]]


def test_a_key_bigger_than_the_limit_travels_alone() -> None:
    sizes = {"small": 1, "huge": 1000, "tail": 1}
    assert split_by_size(["small", "huge", "tail"], sizes, 10) == [["small"], ["huge"], ["tail"]]


def test_nothing_to_send_is_one_empty_run() -> None:
    assert split_by_size([], {}, 10) == [[]]


def _ser(i: int) -> Serialized:
    return Serialized([bytes([i])])


def test_pieces_come_back_together_with_missing_and_errors() -> None:
    pieces = DataPieces()
    assert pieces.add(Data(7, {"a": _ser(1)}, [], {}, True)) is None
    assert pieces.add(Data(8, {"x": _ser(9)}, [], {}, False)) == Data(8, {"x": _ser(9)}, [], {})
    assert pieces.add(Data(7, {"b": _ser(2)}, [], {"e": {"m": 1}}, True)) is None
    done = pieces.add(Data(7, {"c": _ser(3)}, ["gone"], {}, False))
    assert done is not None
    assert sorted(done.items) == ["a", "b", "c"]
    assert done.missing == ["gone"]
    assert done.errors == {"e": {"m": 1}}
    assert not done.more
    assert len(pieces) == 0


def test_a_reply_in_one_piece_needs_no_bookkeeping() -> None:
    info: dict[str, object] = {}
    msg = Data(1, {"a": _ser(1)}, [], {})
    assert whole(info, msg) is msg
    assert info == {}
    assert whole(info, Data(2, {"a": _ser(1)}, [], {}, True)) is None
    assert whole(info, Data(2, {"b": _ser(2)}, [], {})) is not None
