"""The parallel reading of a window over a fake batch client: pages, encoding on the slices' threads,
every row once in ID order, and the first bad row in ID order reported whichever slice meets it first."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_b24.activities import ActivityParseError
from airflow_provider_b24.export import export_activities, read_jsonl
from airflow_provider_b24.export.lines import activity_lines
from airflow_provider_b24.export.slices import (
    MIN_IDS_PER_SLICE,
    iter_window_pages_parallel,
    iter_window_rows_parallel,
)
from tests.unit.export.export_fakes import BASE, FakeBatchClient, spread_rows

COUNT = 3 * MIN_IDS_PER_SLICE + 777  # three slices and a bit
WINDOW = {">=LAST_UPDATED": BASE.isoformat(), "<LAST_UPDATED": (BASE + timedelta(days=3650)).isoformat()}


def client_with(count: int = COUNT) -> FakeBatchClient:
    return FakeBatchClient(spread_rows(count, step=timedelta(seconds=1)))


def test_pages_are_encoded_where_they_are_read_and_come_in_id_order() -> None:
    client = client_with()
    threads: set[str] = set()

    def encode(rows: list[dict[str, Any]]) -> bytes:
        threads.add(threading.current_thread().name)
        return activity_lines(rows)

    pages = list(iter_window_pages_parallel(client, WINDOW, ["*"], slices=4, encode=encode))
    assert all(1 <= count <= 50 for count, _ in pages)
    assert sum(count for count, _ in pages) == COUNT
    assert b"".join(blob for _, blob in pages) == activity_lines(client.rows)
    assert threads >= {"b24-export-slice0", "b24-export-slice2"}  # and the first page here
    assert client.stats.requests <= -(-COUNT // 2500) + 4 + 2
    assert [int(r["ID"]) for r in iter_window_rows_parallel(client, WINDOW, ["*"], slices=3)] == list(
        range(1, COUNT + 1)
    )


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_the_first_bad_row_in_id_order_fails_the_export(tmp_path: Path, fmt: str) -> None:
    """A bad row in the last batch of the first slice and one in the first batch of the last slice
    (met first): the export names the lower one, as the sequential export did, and leaves nothing."""
    client = client_with()
    # Slices after the first page (IDs 1-50): (50, 5292], (5292, 10534], (10534, ...).
    client.rows[5199]["STATUS"] = "x"  # ID 5200: the first slice's third batch
    client.rows[10599]["COMPLETED"] = "maybe"  # ID 10600: the last slice's first batch
    with pytest.raises(ActivityParseError, match="activity 5200: field STATUS"):
        export_activities(
            client, updated_from=BASE, updated_to=BASE.replace(year=2030), path=tmp_path / "x", format=fmt
        )
    assert list(tmp_path.iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("b24-export-slice")]


def test_parallel_export_writes_the_same_file_as_one_chain(tmp_path: Path) -> None:
    client = client_with()
    kwargs: dict[str, Any] = {"updated_from": BASE, "updated_to": BASE.replace(year=2030)}
    parallel = export_activities(client, path=tmp_path / "p.jsonl", slices=4, **kwargs)
    one_chain = export_activities(client, path=tmp_path / "s.jsonl", slices=1, **kwargs)
    assert parallel.rows == one_chain.rows == COUNT
    assert (tmp_path / "p.jsonl").read_bytes() == (tmp_path / "s.jsonl").read_bytes()
    assert [row["ID"] for row in read_jsonl(tmp_path / "p.jsonl")] == list(range(1, COUNT + 1))
