"""``shoal.span``: tasks submitted, mapped or computed in a span run in it
(``dask.get_annotations()["span"]`` inside the task, as dask's worker sets it), and what a
task submits from inside is in a sub-span; the scheduler keeps a record of each span, read
as dask's (``extensions["spans"]``). On the session cluster."""

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


def _span_record(dask_scheduler, span_id: str) -> dict:
    s = dask_scheduler.extensions["spans"].spans[span_id]
    return {"name": s.name, "states": s.states, "done": s.done, "start": s.start,
            "stop": s.stop, "enqueued": s.enqueued, "duration": s.duration,
            "children": [c.id for c in s.children],
            "metrics": s.cumulative_worker_metrics}


def test_the_scheduler_keeps_a_record_of_each_span(client):
    with span("workflow") as sid:
        client.submit(_span_of, "r1").result()
        with span("part") as part:
            client.gather(client.map(_span_of, ["r2", "r3"]))
        dask.delayed(_span_of)("r4").compute()
    record = client.run_on_scheduler(_span_record, span_id=sid)
    assert record["name"] == ("workflow",) and record["children"] == [part]
    assert record["done"] and sum(record["states"].values()) == 4
    assert record["enqueued"] <= record["start"] <= record["stop"]
    assert record["duration"] > 0
    assert {k[:2] for k in record["metrics"]} == {("execute", "_span_of")}
    # dask's documented path, for a cluster in this process
    spans = client.cluster.scheduler.extensions["spans"]
    assert spans.spans[part].parent is spans.spans[sid]
    assert sum(spans.spans[part].states.values()) == 2
