"""dask.dataframe programs on shoal: ETL over CSV files, groupby aggregations, shuffle-based
merge and set_index, rolling windows, map_partitions with meta, parquet round trips. Each
result is checked against the same program on dask's local scheduler."""

from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.integration


def sync(*collections):
    return dask.compute(*collections, scheduler="sync")


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    pdf = pd.DataFrame({"k": rng.integers(0, 20, 2000), "v": rng.random(2000),
                        "w": rng.integers(0, 100, 2000)})
    names = pd.DataFrame({"k": np.arange(20), "name": [f"n{i}" for i in range(20)]})
    return dd.from_pandas(pdf, npartitions=5), dd.from_pandas(names, npartitions=3)


def test_groupby_aggregations_match_the_local_scheduler(client, frames):
    ddf, _ = frames
    agg = ddf.groupby("k").agg({"v": ["sum", "mean"], "w": "max"})
    (expected,) = sync(agg)
    pd.testing.assert_frame_equal(agg.compute().sort_index(), expected.sort_index())
    nunique = ddf.w.nunique()
    assert nunique.compute() == sync(nunique)[0]


def test_shuffle_merge_and_set_index(client, frames):
    ddf, names = frames
    merged = ddf.merge(names, on="k", how="inner", shuffle_method="tasks")
    (expected,) = sync(merged)
    got = merged.compute()
    key = ["k", "v"]
    pd.testing.assert_frame_equal(got.sort_values(key).reset_index(drop=True),
                                  expected.sort_values(key).reset_index(drop=True))
    by_w = ddf.set_index("w", shuffle_method="tasks")
    lengths = by_w.map_partitions(len).compute()
    assert lengths.sum() == 2000 and by_w.known_divisions
    assert by_w.loc[10:20].v.sum().compute() == pytest.approx(sync(by_w.loc[10:20].v.sum())[0])


def test_rolling_and_map_partitions_with_meta(client, frames):
    ddf, _ = frames
    series = pd.DataFrame({"x": np.arange(100.0)},
                          index=pd.date_range("2020", periods=100, freq="h"))
    ts = dd.from_pandas(series, npartitions=4)
    rolled = ts.x.rolling("3h").sum()
    pd.testing.assert_series_equal(rolled.compute(), sync(rolled)[0])
    doubled = ddf.map_partitions(lambda df: df.assign(z=df.v * 2),
                                 meta={"k": "i8", "v": "f8", "w": "i8", "z": "f8"})
    assert doubled.z.sum().compute() == pytest.approx(sync(doubled.z.sum())[0])


def test_csv_etl_to_parquet_round_trip(client, tmp_path):
    rng = np.random.default_rng(1)
    for i in range(3):
        pd.DataFrame({"id": rng.integers(0, 50, 200), "cat": rng.choice(list("abcd"), 200),
                      "amt": rng.random(200).round(3),
                      "day": pd.date_range("2024-01-01", periods=200, freq="h").astype(str)}
                     ).to_csv(tmp_path / f"part{i}.csv", index=False)
    df = dd.read_csv(str(tmp_path / "part*.csv"), parse_dates=["day"])
    daily = df.set_index("day").amt.resample("1D").sum()
    counts = df.cat.value_counts()
    got_daily, got_counts = dask.compute(daily, counts)
    want_daily, want_counts = sync(daily, counts)
    pd.testing.assert_series_equal(got_daily, want_daily)
    pd.testing.assert_series_equal(got_counts.sort_index(), want_counts.sort_index())
    out = tmp_path / "pq"
    df.to_parquet(str(out), partition_on=["cat"])
    back = dd.read_parquet(str(out))
    assert back.amt.sum().compute() == pytest.approx(df.amt.sum().compute(scheduler="sync"))
    assert sorted(back.cat.unique().compute().astype(str)) == list("abcd")
