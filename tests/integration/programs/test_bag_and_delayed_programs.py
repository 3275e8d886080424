"""dask.bag and dask.delayed programs on shoal: word counts (frequencies, foldby, groupby),
text files written and read back, reductions with split_every; nested delayed structures,
pure=True deduplication, odd and tuple key names. Checked against dask's local scheduler."""

from __future__ import annotations

import glob
import operator

import dask
import dask.bag as db
import pytest
from dask import delayed

pytestmark = pytest.mark.integration

WORDS = ("the quick brown fox jumps over the lazy dog the end " * 50).split()


def inc(x: int) -> int:
    return x + 1


def combine(d: dict) -> dict:
    return {k: sum(v) if isinstance(v, list) else v for k, v in d.items()}


def test_word_counts_three_ways(client):
    words = db.from_sequence(WORDS, npartitions=7)
    freq = words.frequencies()
    folded = words.foldby(len, lambda acc, _: acc + 1, 0, operator.add, 0)
    grouped = words.groupby(len, shuffle="tasks").map(lambda kv: (kv[0], len(kv[1])))
    top = freq.topk(3, key=lambda kv: kv[1])
    got = dask.compute(freq, folded, grouped, top)
    want = dask.compute(freq, folded, grouped, top, scheduler="sync")
    assert [sorted(g) for g in got[:3]] == [sorted(w) for w in want[:3]]
    assert got[3] == want[3]


def test_text_files_written_by_workers_read_back(client, tmp_path):
    words = db.from_sequence(WORDS, npartitions=7).map(str.upper)
    words.to_textfiles(str(tmp_path / "*.txt"))
    assert len(glob.glob(str(tmp_path / "*.txt"))) == words.npartitions
    back = db.read_text(str(tmp_path / "*.txt")).map(str.strip)
    assert back.count().compute() == len(WORDS)
    assert sorted(back.distinct().compute()) == sorted({w.upper() for w in WORDS})


def test_bag_reductions_and_conversions(client):
    nums = db.from_sequence(range(100), npartitions=6)
    records = db.from_sequence([{"a": i, "b": i * 2} for i in range(20)], npartitions=3)
    parts = (nums.reduction(sum, sum, split_every=2), nums.accumulate(operator.add),
             records.pluck("b").sum(), records.to_dataframe().b.sum(),
             nums.product(db.from_sequence(range(3), npartitions=2)).count())
    assert list(dask.compute(*parts)) == list(dask.compute(*parts, scheduler="sync"))


def test_nested_delayed_structures_dedup_and_odd_keys(client):
    a = [delayed(inc, pure=True)(i) for i in range(5)]
    b = [delayed(inc, pure=True)(i) for i in range(5)]
    assert [x.key for x in a] == [x.key for x in b]  # pure=True: same task, one key
    nested = delayed(combine)({"xs": a, "ys": b, "t": (a[0], {"deep": [b[1], 3]})})
    want = {"xs": 15, "ys": 15, "t": (1, {"deep": [2, 3]})}
    assert nested.compute() == want
    assert client.compute(nested).result(timeout=30) == want
    assert client.persist(nested).compute() == want
    odd = delayed(inc)(1, dask_key_name="weird key/with:chars[0]")
    tupled = delayed(inc)(2, dask_key_name=("tuple-key", 3, "x"))
    pair = delayed(lambda x: (x, x * 2), nout=2)(4)
    got = dask.compute(a, {"b": b}, (odd, 5), tupled, *pair)
    assert got == ([1, 2, 3, 4, 5], {"b": [1, 2, 3, 4, 5]}, (2, 5), 3, 4, 8)
    assert odd.key == "weird key/with:chars[0]"


def test_delayed_on_futures_and_methods_of_delayed_values(client):
    f = client.submit(inc, 10)
    assert delayed(operator.add)(f, 1).compute() == 12
    d = delayed({"a": [1, 2, 3]})
    assert dask.compute(d["a"][1], delayed("a,b,c").split(",")) == (2, ["a", "b", "c"])
    assert [x.compute() for x in dask.persist(*[delayed(inc)(i) for i in range(3)])] == [1, 2, 3]
