"""compute's walk over containers (shoal/client/_containers.py): collections out, results
back in their places, container types kept."""

from __future__ import annotations

import collections
import dataclasses

import dask.array as da
from dask import delayed

from shoal.client._containers import Slot, repack, unpack


class Marker:
    """Stands for a Future: found because it is the ``also`` type."""


Pair = collections.namedtuple("Pair", "left right")


@dataclasses.dataclass
class Holder:
    value: object
    fixed: int = 0


def test_unpack_finds_collections_in_order_and_repack_puts_results_back():
    x, d, m = da.ones(2, chunks=1), delayed(len)("ab"), Marker()
    obj = {"a": [x, 1, (d, {m})], "b": Pair(d, "s"), "c": collections.OrderedDict(k=x)}
    found: list = []
    template = unpack(obj, found, also=Marker)
    assert [id(f) for f in found] == list(map(id, [x, d, m, d, x]))
    assert template["a"][2][1] == {Slot(2)}
    assert type(template["c"]) is collections.OrderedDict
    out = repack(template, ["X", "D", "M", "D2", "X2"])
    assert out == {"a": ["X", 1, ("D", {"M"})], "b": Pair("D2", "s"),
                   "c": collections.OrderedDict(k="X2")}
    assert type(out["b"]) is Pair


def test_dataclasses_inside_are_walked_and_plain_values_kept():
    d = delayed(len)("abc")
    found: list = []
    template = unpack([Holder(d, 4), "text", 3.5, None], found)
    assert len(found) == 1 and found[0] is d
    assert repack(template, [3]) == [Holder(3, 4), "text", 3.5, None]
    assert unpack((1, [2, {"k": 3}]), []) == (1, [2, {"k": 3}])
