"""Pure tests of the datasets machine: names, holds on keys, dask's errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shoal.scheduler._datasets import (
    AnswerDatasets,
    DatasetNamesAsked,
    Datasets,
    DatasetsAsked,
    DatasetsPublished,
    DatasetsUnpublished,
    DropHolder,
    HoldKeys,
    LetGoKeys,
    holder_of,
)


@pytest.fixture
def ds() -> Iterator[Datasets]:
    d = Datasets()
    yield d
    d.validate()


def publish(ds: Datasets, *items: tuple, override: bool = False, rid: int = 1) -> list:
    return ds.handle(DatasetsPublished("c", rid, list(items), override))


def test_publish_holds_the_keys_and_answers_ok(ds: Datasets) -> None:
    out = publish(ds, ("model", b"pickled", ["k1", "k2"]))
    assert out == [HoldKeys(holder_of("model"), ["k1", "k2"]), AnswerDatasets("c", 1, ("ok", None))]


def test_get_returns_payloads_and_none_for_unknown_names(ds: Datasets) -> None:
    publish(ds, ("model", b"m", []))
    out = ds.handle(DatasetsAsked("c2", 5, ["model", "nope"]))
    assert out == [AnswerDatasets("c2", 5, ("ok", [b"m", None]))]


def test_duplicate_name_is_a_key_error_and_changes_nothing(ds: Datasets) -> None:
    publish(ds, ("model", b"old", ["k1"]))
    out = publish(ds, ("other", b"o", ["k9"]), ("model", b"new", ["k2"]), rid=2)
    assert len(out) == 1
    status, kind, message = out[0].value
    assert (status, kind) == ("error", "KeyError")
    assert "already exists" in message and "override=True" in message
    assert set(ds.published) == {"model"}


def test_override_replaces_and_lets_go_of_stale_keys_only(ds: Datasets) -> None:
    publish(ds, ("model", b"old", ["k1", "k2"]))
    out = publish(ds, ("model", b"new", ["k2", "k3"]), override=True, rid=2)
    holder = holder_of("model")
    assert out == [
        HoldKeys(holder, ["k2", "k3"]),
        LetGoKeys(holder, ["k1"]),
        AnswerDatasets("c", 2, ("ok", None)),
    ]
    assert ds.published["model"] == (b"new", ["k2", "k3"])


def test_same_name_twice_in_one_call_is_a_value_error(ds: Datasets) -> None:
    (answer,) = publish(ds, ("x", b"1", []), ("x", b"2", []))
    assert answer.value[:2] == ("error", "ValueError")


def test_unpublish_drops_the_holder_and_ignores_unknown_names(ds: Datasets) -> None:
    publish(ds, ("model", b"m", ["k1"]))
    out = ds.handle(DatasetsUnpublished("c", 3, ["model", "unknown"]))
    assert out == [DropHolder(holder_of("model")), AnswerDatasets("c", 3, ("ok", None))]
    assert ds.published == {}


def test_names_are_listed_sorted_by_text(ds: Datasets) -> None:
    publish(ds, ("b", b"", []), (1, b"", []), ("a", b"", []))
    assert ds.handle(DatasetNamesAsked("c", 4)) == [AnswerDatasets("c", 4, ("ok", [1, "a", "b"]))]


def test_holders_of_different_names_differ() -> None:
    assert holder_of("1") != holder_of(1)
