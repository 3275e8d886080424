"""Pure tests of the dashboard renderers: a snapshot in, text out; no sockets, no loop."""

from __future__ import annotations

import json
import re

import pytest
from _fake import FakeSource, counts, make_worker

from shoal.dashboard import _views
from shoal.dashboard._source import STATES

SAMPLE = re.compile(r"^([a-z_]+)(\{[^}]*\})? (\S+)$")


def parse_prometheus(text: str) -> tuple[dict[str, tuple[str, str]], dict[str, float]]:
    """Minimal exposition parser: {name: (help, type)} and {'name{labels}': value}."""
    meta: dict[str, list[str]] = {}
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, help_text = line[7:].split(" ", 1)
            meta.setdefault(name, ["", ""])[0] = help_text
        elif line.startswith("# TYPE "):
            name, kind = line[7:].split(" ", 1)
            meta.setdefault(name, ["", ""])[1] = kind
        else:
            m = SAMPLE.match(line)
            assert m, f"not an exposition line: {line!r}"
            assert m.group(1) in meta, f"sample {m.group(1)} before its HELP/TYPE lines"
            samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return {k: (v[0], v[1]) for k, v in meta.items()}, samples


def busy_source() -> FakeSource:
    src = FakeSource(n_workers=3)
    src.prefixes = {
        "inc": counts(memory=7, processing=2, waiting=1),
        "sum": counts(waiting=1, erred=1),
    }
    src.workers[0]["processing"] = 2
    src.tasks_per_second = 12.5
    return src


def test_prometheus_has_help_and_type_for_every_family() -> None:
    meta, samples = parse_prometheus(_views.prometheus_text(busy_source().snapshot()))
    for name, (help_text, kind) in meta.items():
        assert help_text, name
        assert kind == "gauge", name
    assert samples['shoal_scheduler_tasks{state="memory"}'] == 7
    assert samples['shoal_scheduler_tasks{state="waiting"}'] == 2
    assert samples['shoal_scheduler_tasks{state="erred"}'] == 1
    assert samples['shoal_scheduler_prefix_tasks{prefix="inc",state="processing"}'] == 2
    assert samples["shoal_scheduler_workers"] == 3
    assert samples["shoal_scheduler_threads"] == 6
    assert samples["shoal_scheduler_tasks_per_second"] == 12.5
    assert samples["shoal_scheduler_uptime_seconds"] == 75.0
    assert samples['shoal_worker_processing_tasks{worker="tcp://127.0.0.1:40000"}'] == 2


def test_prometheus_memory_splits_managed_and_unmanaged() -> None:
    snap = busy_source().snapshot()
    _, samples = parse_prometheus(_views.prometheus_text(snap))
    t = snap["totals"]
    assert samples['shoal_scheduler_memory_bytes{type="managed"}'] == t["memory_managed"]
    assert samples['shoal_scheduler_memory_bytes{type="unmanaged"}'] == (
        t["memory_process"] - t["memory_managed"]
    )
    assert samples['shoal_scheduler_memory_bytes{type="limit"}'] == t["memory_limit"]


def test_prometheus_shows_spilled_unmanaged_and_paused_per_worker() -> None:
    snap = busy_source().snapshot()
    _, samples = parse_prometheus(_views.prometheus_text(snap))
    w1 = snap["workers"][1]
    label = f'worker="{w1["address"]}"'
    assert samples[f'shoal_worker_memory_bytes{{{label},type="spilled"}}'] == w1["memory_spilled"]
    assert samples[f'shoal_worker_memory_bytes{{{label},type="unmanaged"}}'] == (
        w1["memory_process"] - w1["memory_managed"])
    assert samples[f"shoal_worker_paused{{{label}}}"] == 1
    assert samples[f'shoal_worker_paused{{worker="{snap["workers"][0]["address"]}"}}'] == 0
    assert samples['shoal_scheduler_memory_bytes{type="spilled"}'] == snap["totals"]["memory_spilled"]
    assert samples["shoal_scheduler_workers_paused"] == 1


def test_prometheus_escapes_label_values() -> None:
    src = FakeSource(n_workers=0)
    src.prefixes = {'we"ird\\pre\nfix': counts(memory=1)}
    text = _views.prometheus_text(src.snapshot())
    assert 'prefix="we\\"ird\\\\pre\\nfix"' in text
    parse_prometheus(text)  # still one sample per line


def test_prometheus_empty_cluster() -> None:
    _, samples = parse_prometheus(_views.prometheus_text(FakeSource(n_workers=0).snapshot()))
    assert samples["shoal_scheduler_workers"] == 0
    assert all(samples[f'shoal_scheduler_tasks{{state="{s}"}}'] == 0 for s in STATES)


def test_info_document_is_json_with_scheduler_totals_and_workers() -> None:
    doc = _views.info_document(busy_source().snapshot())
    again = json.loads(json.dumps(doc))
    assert again["scheduler"]["address"] == "tcp://127.0.0.1:8786"
    assert again["totals"]["workers"] == 3
    assert [w["name"] for w in again["workers"]] == ["worker-0", "worker-1", "worker-2"]
    assert again["tasks_by_state"]["memory"] == 7
    assert "prefixes" not in again


def test_not_found_page_names_path_and_links_every_page() -> None:
    page = _views.not_found_html("/nope<script>")
    assert "404" in page
    assert "/nope&lt;script&gt;" in page and "<script>" not in page
    for href in ("/status", "/workers", "/info", "/metrics", "/health"):
        assert f'href="{href[1:]}"' in page


def test_workers_page_has_one_row_per_worker() -> None:
    src = busy_source()
    page = _views.workers_html(src.snapshot())
    for w in src.workers:
        assert f'data-worker="{w["address"]}"' in page
    assert page.count("<tr data-worker=") == 3
    for column in _views.WORKER_COLUMNS:
        assert f">{column}</th>" in page
    assert "300.00 MiB / 4.00 GiB" in page
    assert "just now" in page


def test_workers_page_without_workers() -> None:
    assert "No workers connected" in _views.workers_html(FakeSource(n_workers=0).snapshot())


def test_format_bytes_and_ago() -> None:
    assert _views.format_bytes(0) == "0 B"
    assert _views.format_bytes(1536) == "1.50 KiB"
    assert _views.format_bytes(5 * 2**30) == "5.00 GiB"
    assert _views.format_ago(0.2) == "just now"
    assert _views.format_ago(30) == "30 s ago"
    assert _views.format_ago(600) == "10 min ago"


def test_task_stream_document_caps_history() -> None:
    src = FakeSource()
    for i in range(_views.MAX_STREAM_RECORDS + 10):
        src.add_record(f"inc-{i}", 0, 0, float(i), i + 0.5)
    cursor, records = src.task_stream_since(0)
    doc = _views.task_stream_document(cursor, records)
    assert doc["cursor"] == _views.MAX_STREAM_RECORDS + 10
    assert doc["dropped"] == 10
    assert len(doc["records"]) == _views.MAX_STREAM_RECORDS
    assert doc["records"][0]["key"] == "inc-10"  # the newest are kept


def test_task_stream_json_is_the_json_of_the_document() -> None:
    records = [
        {"key": "('sum-\u00e9\"x', 3)", "prefix": "sum", "worker": "tcp://10.0.0.1:1",
         "thread": 1, "start": 1764800000.123456, "stop": 1764800000.5, "kind": "compute"},
        {"key": "inc-\\1\n", "prefix": "inc", "worker": "tcp://10.0.0.1:1",
         "thread": -1, "start": 0.1, "stop": 2.0, "kind": "transfer"},
    ]
    doc = _views.task_stream_document(7, records, skipped=3)
    assert _views.task_stream_json(doc) == json.dumps(doc, separators=(",", ":"))
    empty = _views.task_stream_document(0, [])
    assert _views.task_stream_json(empty) == json.dumps(empty, separators=(",", ":"))
    bad = _views.task_stream_document(1, [dict(records[0], stop=float("nan"))])
    with pytest.raises(ValueError, match="not finite"):
        _views.task_stream_json(bad)


def _rendered(memory_per_prefix: int) -> list[str]:
    """Every view of 100 workers and 200 prefixes holding ``memory_per_prefix`` tasks each."""
    src = FakeSource(n_workers=0)
    src.workers = [make_worker(i, processing=i % 5) for i in range(100)]
    src.prefixes = {f"prefix-{p}": counts(memory=memory_per_prefix, processing=2)
                    for p in range(200)}
    snap = src.snapshot()
    assert snap["totals"]["tasks"] == 200 * (memory_per_prefix + 2)
    return [json.dumps(snap), _views.prometheus_text(snap),
            json.dumps(_views.info_document(snap)), _views.workers_html(snap)]


def test_views_grow_with_workers_and_prefixes_not_with_tasks() -> None:
    """100k or 10M tasks in memory render the same views (up to the digits of the counts):
    the cost of a render is O(aggregates), whatever the machine's speed."""
    small, large = _rendered(500), _rendered(50_000)
    for a, b in zip(small, large, strict=True):
        assert len(b) - len(a) <= 0.1 * len(a), (len(a), len(b))
