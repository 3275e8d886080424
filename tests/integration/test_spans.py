"""``shoal.span``: tasks submitted, mapped or computed in a span run in it
(``dask.get_annotations()["span"]`` inside the task, as dask's worker sets it), and what a
task submits from inside is in a sub-span. On the session cluster."""

from __future__ import annotations

import dask
import pytest

from shoal import get_client, span

pytestmark = [pytest.mark.integration]


def _span_of(_x: object = None) -> object:
    return dask.get_annotations().get("span")


def _submits_in_a_sub_span(x: int) -> object:
    with span("inner"):
        return get_client().submit(_span_of, x).result()


def test_tasks_run_in_the_span_they_were_submitted_in(client):
    with span("outer") as sid:
        want = {"name": ("outer",), "ids": (sid,)}
        assert client.submit(_span_of, "s1").result() == want
        assert client.map(_span_of, ["m1", "m2"])[1].result() == want
        assert dask.delayed(_span_of)("d1").compute() == want
        inner = client.submit(_submits_in_a_sub_span, 1).result()
        assert inner["name"] == ("outer", "inner") and inner["ids"][0] == sid
    assert client.submit(_span_of, "after").result() is None
