"""export_activities over a fake client: streaming, boundaries, dedupe, crash, cancel, request counts."""

from __future__ import annotations

import csv
import json
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_b24.export import (
    ExportArgumentError,
    ExportCancelled,
    export_activities,
    iter_window_rows,
    read_jsonl,
)
from tests.unit.export.export_fakes import BASE, FakeListClient, spread_rows, wire_row

HOUR = timedelta(hours=1)


def run(client: FakeListClient, path: Path, start: datetime = BASE, end: datetime = BASE + HOUR, **kw: Any):
    return export_activities(client, updated_from=start, updated_to=end, path=str(path), **kw)


def ids_in(path: Path) -> list[int]:
    return [row["ID"] for row in read_jsonl(path)]


def test_exports_the_window_and_returns_the_summary(tmp_path: Path) -> None:
    client = FakeListClient(spread_rows(1000))  # one row every 7 s
    out = tmp_path / "x.jsonl"
    result = run(client, out, BASE, BASE + HOUR)
    expected = [i for i in range(1, 1001) if (i - 1) * 7 < 3600]
    assert ids_in(out) == expected
    assert result.to_xcom() == {
        "path": str(out),
        "rows": len(expected),
        "requests": 2,
        "updated_from": "2024-01-01T00:00:00+00:00",
        "updated_to": "2024-01-01T01:00:00+00:00",
    }
    _method, params = client.calls[0]
    assert params["filter"] == {
        ">=LAST_UPDATED": "2024-01-01T00:00:00+00:00",
        "<LAST_UPDATED": "2024-01-01T01:00:00+00:00",
    }
    assert params["order"] == {"ID": "ASC"} and params["select"] == ["*"]


@pytest.mark.parametrize("offset_hours", [0, 3, -5, 5.75])
def test_boundaries_with_portal_offsets(tmp_path: Path, offset_hours: float) -> None:
    """A row exactly at updated_from is in; exactly at updated_to is out, whatever the portal's offset."""
    tz = timezone(timedelta(hours=offset_hours))
    second = timedelta(seconds=1)
    moments = [BASE - second, BASE, BASE + second, BASE + HOUR - second, BASE + HOUR, BASE + HOUR + second]
    client = FakeListClient([wire_row(i + 1, m.astimezone(tz)) for i, m in enumerate(moments)])
    out = tmp_path / "b.jsonl"
    run(client, out, "2024-01-01 00:00:00+00:00", "2024-01-01T01:00:00+00:00")
    assert ids_in(out) == [2, 3, 4]
    assert [r["LAST_UPDATED"].utcoffset() for r in read_jsonl(out)] == [tz.utcoffset(None)] * 3


def test_consecutive_intervals_cover_every_row_once(tmp_path: Path) -> None:
    rows = spread_rows(3000, step=timedelta(seconds=5))  # ~4.2 hours, rows on every boundary
    client = FakeListClient(rows)
    seen: list[int] = []
    for hour in range(6):
        out = tmp_path / f"{hour}.jsonl"
        run(client, out, BASE + hour * HOUR, BASE + (hour + 1) * HOUR)
        seen += ids_in(out)
    assert sorted(seen) == list(range(1, 3001))
    assert len(seen) == len(set(seen))


def test_duplicates_count_is_deprecated_and_zero(tmp_path: Path) -> None:
    result = run(FakeListClient(spread_rows(3)), tmp_path / "d.jsonl", BASE, BASE + HOUR)
    with pytest.warns(DeprecationWarning, match="always 0"):
        assert result.duplicates == 0
    with pytest.warns(DeprecationWarning, match="ignored"):
        rows = list(iter_window_rows(FakeListClient(spread_rows(3)), {}, ["*"], duplicates=[0]))
    assert [int(r["ID"]) for r in rows] == [1, 2, 3]


@pytest.mark.parametrize(("count", "requests"), [(0, 1), (1, 1), (49, 1), (50, 2), (2550, 3), (5000, 3)])
def test_requests_are_counted_from_the_client(tmp_path: Path, count: int, requests: int) -> None:
    client = FakeListClient(spread_rows(count, step=timedelta(milliseconds=100)))
    result = run(client, tmp_path / "r.jsonl", BASE, BASE + HOUR)
    assert (result.rows, result.requests) == (count, requests)


def test_crash_mid_export_leaves_no_file_and_no_temp(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    client = FakeListClient(spread_rows(6000, step=timedelta(milliseconds=100)), fail_after_rows=3000)
    with pytest.raises(ConnectionError):
        run(client, out_dir / "c.jsonl")
    assert list(out_dir.iterdir()) == []


def test_crash_keeps_the_previous_file_and_a_rerun_replaces_it(tmp_path: Path) -> None:
    out = tmp_path / "c.csv"
    rows = spread_rows(300, step=timedelta(seconds=1))
    run(FakeListClient(rows[:100]), out, format="csv")
    before = out.read_bytes()
    with pytest.raises(ConnectionError):
        run(FakeListClient(rows, fail_after_rows=150), out, format="csv")
    assert out.read_bytes() == before
    result = run(FakeListClient(rows), out, format="csv")
    with out.open(newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert result.rows == 300 and [int(r["ID"]) for r in table] == list(range(1, 301))
    assert [p.name for p in tmp_path.iterdir()] == ["c.csv"]


def test_bad_parse_fails_the_export_and_leaves_nothing(tmp_path: Path) -> None:
    rows = spread_rows(10)
    rows[5]["COMPLETED"] = "maybe"
    with pytest.raises(ValueError, match="COMPLETED"):
        run(FakeListClient(rows), tmp_path / "p.jsonl")
    assert list(tmp_path.iterdir()) == []


def test_cancel_stops_and_cleans_up(tmp_path: Path) -> None:
    cancel = threading.Event()
    client = FakeListClient(spread_rows(500, step=timedelta(seconds=1)))
    original = client.iter_list

    def iter_list(method: str, params: Any = None):
        for n, row in enumerate(original(method, params)):
            if n == 200:
                cancel.set()  # what on_kill does
            yield row

    client.iter_list = iter_list  # type: ignore[method-assign]
    with pytest.raises(ExportCancelled, match="200 rows"):
        run(client, tmp_path / "k.jsonl", cancel=cancel)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"updated_from": "2024-01-01T00:00:00", "updated_to": "2024-01-02T00:00:00+00:00"},
        {"updated_from": "2024-01-02T00:00:00+00:00", "updated_to": "2024-01-01T00:00:00+00:00"},
        {"filter": {">=LAST_UPDATED": "2020-01-01T00:00:00+00:00"}},
        {"filter": {">ID": 5}},
        {"format": "xml"},
        {"select": 5},
        {"path": "s3://bucket/key.jsonl"},  # export_activities needs an ObjectStoragePath for it
    ],
)
def test_bad_arguments_fail_before_any_request(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    client = FakeListClient(spread_rows(10))
    arguments: dict[str, Any] = {
        "updated_from": "2024-01-01T00:00:00+00:00",
        "updated_to": "2024-01-02T00:00:00+00:00",
        "path": str(tmp_path / "a.jsonl"),
        **kwargs,
    }
    with pytest.raises(ExportArgumentError):
        export_activities(client, **arguments)
    assert client.stats.requests == 0 and client.calls == []
    assert list(tmp_path.iterdir()) == []


def test_user_filter_and_select(tmp_path: Path) -> None:
    rows = [wire_row(i, BASE + i * timedelta(seconds=1), TYPE_ID=str(1 + i % 2)) for i in range(1, 21)]
    client = FakeListClient(rows)
    out = tmp_path / "s.jsonl"
    run(client, out, filter={"TYPE_ID": "2"}, select=["SUBJECT", "TYPE_ID"])
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["ID"] for line in lines] == list(range(1, 21, 2))
    assert set(lines[0]) == {"ID", "SUBJECT", "TYPE_ID"} and lines[0]["TYPE_ID"] == 2
    assert client.calls[0][1]["select"] == ["ID", "SUBJECT", "TYPE_ID"]


def test_empty_window_writes_an_empty_file(tmp_path: Path) -> None:
    out = tmp_path / "e.jsonl"
    result = run(FakeListClient([]), out)
    assert out.read_bytes() == b"" and result.rows == 0 and result.requests == 1


def test_bounds_in_any_offset_are_reported_in_utc(tmp_path: Path) -> None:
    start = datetime(2024, 1, 1, 3, tzinfo=timezone(timedelta(hours=3)))
    result = run(FakeListClient([]), tmp_path / "u.jsonl", start, start.astimezone(UTC) + HOUR)
    assert (result.updated_from, result.updated_to) == (
        "2024-01-01T00:00:00+00:00",
        "2024-01-01T01:00:00+00:00",
    )
