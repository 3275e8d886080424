"""performance_report with a fake client: the HTML names every prefix with its timings."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from shoal.diagnostics import _report, performance_report
from shoal.diagnostics._report import render_report, summarize


def record(
    key: str, start: float, stop: float, worker: int = 0, thread: int = 0, kind: str = "compute"
) -> dict[str, Any]:
    return {
        "key": key,
        "prefix": key.split("-")[0],
        "worker": f"tcp://127.0.0.1:{40000 + worker}",
        "thread": thread,
        "start": start,
        "stop": stop,
        "kind": kind,
    }


class FakeClient:
    """Implements only what performance_report uses: ``_task_stream_since``."""

    def __init__(self, history: list[dict[str, Any]]) -> None:
        self.records = list(history)
        self.calls: list[int] = []

    def _task_stream_since(self, cursor: int) -> tuple[int, list[dict[str, Any]]]:
        self.calls.append(cursor)
        return len(self.records), self.records[max(cursor, 0) :]


class AsyncFakeClient(FakeClient):
    async def _task_stream_since(self, cursor: int) -> tuple[int, list[dict[str, Any]]]:  # type: ignore[override]
        return FakeClient._task_stream_since(self, cursor)


def test_summarize_per_prefix_and_kind() -> None:
    rows = summarize(
        [
            record("inc-1", 0.0, 1.0),
            record("inc-2", 1.0, 4.0),
            record("load-1", 0.0, 0.5),
            record("inc-1", 2.0, 2.25, kind="transfer"),
        ]
    )
    by = {(r.prefix, r.kind): r for r in rows}
    inc = by["inc", "compute"]
    assert (inc.count, inc.total, inc.mean, inc.max) == (2, 4.0, 2.0, 3.0)
    assert by["load", "compute"].total == 0.5
    assert by["inc", "transfer"].count == 1
    assert [r.prefix for r in rows][:2] == ["inc", "load"]  # compute first, biggest total first
    assert rows[-1].kind == "transfer"


def test_report_html_is_standalone_and_lists_timings() -> None:
    recs = [record(f"inc-{i}", 100.0 + i, 100.5 + i, worker=i % 2) for i in range(6)]
    recs.append(record("sum-0", 106.0, 108.0))
    page = render_report(recs, started=100.0, stopped=110.0)
    assert "<script src=" not in page and "<link" not in page  # everything inline
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page
    table = page[page.index('id="prefix-summary"') :]
    inc_row = re.search(r'<tr data-prefix="inc" data-kind="compute">(.*?)</tr>', table)
    assert inc_row is not None
    cells = re.findall(r'<td class="num">([^<]*)</td>', inc_row.group(1))
    assert cells[:4] == ["6", "3.00 s", "500.0 ms", "500.0 ms"]
    assert 'data-prefix="sum"' in table and "2.00 s" in table
    data = page[page.index('id="report-data">') + len('id="report-data">') :]
    data = data[: data.index("</script>")]
    assert len(json.loads(data)["records"]) == 7
    assert "ShoalTaskStream" in page


def test_report_escapes_keys_that_look_like_markup() -> None:
    page = render_report([record("x</script><b>-1", 1.0, 2.0)], started=0.0, stopped=3.0)
    data = page[page.index('id="report-data">') :]
    assert "</script><b>" not in data[: data.index("</script>")]


def test_empty_report() -> None:
    assert "No tasks ran" in render_report([], started=0.0, stopped=1.0)


def test_context_manager_reports_only_what_ran_inside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = FakeClient([record("earlier-1", 1.0, 2.0)])
    monkeypatch.setattr(_report, "_get_client", lambda: client)
    target = tmp_path / "report.html"
    with performance_report(filename=target):
        client.records += [record("inside-1", 3.0, 3.5), record("inside-2", 3.5, 4.5, thread=1)]
    page = target.read_text()
    assert 'data-prefix="inside"' in page and "earlier" not in page
    assert client.calls == [-1, 1]


def test_report_is_written_when_the_block_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = FakeClient([])
    monkeypatch.setattr(_report, "_get_client", lambda: client)
    target = tmp_path / "report.html"
    with pytest.raises(ZeroDivisionError), performance_report(filename=target):
        client.records.append(record("div-1", 1.0, 1.1))
        1 / 0  # noqa: B018
    assert 'data-prefix="div"' in target.read_text()


def test_async_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = AsyncFakeClient([record("old-1", 0.0, 1.0)])
    monkeypatch.setattr(_report, "_get_client", lambda: client)
    target = tmp_path / "report.html"

    async def main() -> None:
        async with performance_report(filename=target):
            client.records.append(record("new-1", 2.0, 3.0))

    asyncio.run(main())
    assert 'data-prefix="new"' in target.read_text()
    with pytest.raises(TypeError, match="async with"), performance_report(filename=target):
        pass


class ProfilingFakeClient(FakeClient):
    """Also answers ``profile(start=...)``, as a real client does."""

    def __init__(self, history: list[dict[str, Any]]) -> None:
        super().__init__(history)
        self.profile_starts: list[float] = []

    def profile(self, start: float | None = None) -> dict[str, Any]:
        from shoal import _profile_tree as trees

        self.profile_starts.append(start)
        tree = trees.new()
        trees.add_stack(tree, [("crunch_numbers", "work.py", 1, 3)])
        return tree


def test_report_has_a_profile_section_of_the_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = ProfilingFakeClient([])
    monkeypatch.setattr(_report, "_get_client", lambda: client)
    target = tmp_path / "report.html"
    with performance_report(filename=target) as report:
        client.records.append(record("inc-1", 1.0, 1.1))
    page = target.read_text()
    assert client.profile_starts == [report._started]
    assert 'id="profile-panel"' in page and "crunch_numbers" in page
    assert "shoalProfile.draw" in page


def test_report_without_a_profile_leaves_its_section_out() -> None:
    assert 'id="profile-panel"' not in render_report([], started=0.0, stopped=1.0)
