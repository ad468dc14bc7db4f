"""Activity export over real HTTPS against the bundled emulator.

Request counts are what the emulator served (``emu.stats["requests"]``) and must equal what the
export reports. Rows are placed with ``emu.store`` at chosen ``LAST_UPDATED`` instants in the
portal's own offset.
"""

from __future__ import annotations

import csv
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_b24._compat import AirflowFailException
from airflow_provider_b24.client import Bitrix24Client, ClientConfig, WebhookAuth
from airflow_provider_b24.exceptions import Bitrix24ServerError
from airflow_provider_b24.export import export_activities, read_jsonl
from airflow_provider_b24.operators.export import Bitrix24ExportActivitiesOperator
from airflow_provider_b24.testing import DATA_FROM, DATA_TO, Bitrix24Emulator

START = datetime(2024, 3, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
YEAR_FROM = datetime.fromtimestamp(DATA_FROM, UTC)
YEAR_TO = datetime.fromtimestamp(DATA_TO, UTC)


def client_for(emu: Bitrix24Emulator) -> Bitrix24Client:
    return Bitrix24Client(
        emu.base_url,
        WebhookAuth(user_id=emu.user_id, code=emu.webhook_code),
        ClientConfig(verify=emu.verify, rate_limit=0, max_retries=0),
    )


def served(emu: Bitrix24Emulator) -> int:
    return int(emu.stats["requests"])


def place(emu: Bitrix24Emulator, moments: list[datetime]) -> list[int]:
    """One activity per moment, LAST_UPDATED written in the portal's offset; returns the IDs."""
    ids = []
    for n, moment in enumerate(moments):
        activity_id = emu.store.add(
            {"SUBJECT": f"row {n}", "TYPE_ID": "2", "OWNER_TYPE_ID": "2", "OWNER_ID": "1"}
        )
        emu.store.touch(activity_id, moment.astimezone(emu.store.tz).isoformat())
        ids.append(activity_id)
    return ids


def export(emu: Bitrix24Emulator, path: Path, start: Any, end: Any, **kwargs: Any) -> dict[str, Any]:
    with client_for(emu) as client:
        before = served(emu)
        result = export_activities(client, updated_from=start, updated_to=end, path=str(path), **kwargs)
        assert result.requests == served(emu) - before  # the client's count is what the portal served
        return {"rows": result.rows, "requests": result.requests, "ids": [r["ID"] for r in read_jsonl(path)]}


@pytest.mark.parametrize(("count", "requests"), [(0, 1), (1, 1), (2500, 2), (2501, 2)])
def test_request_counts(bitrix24_emulator_factory: Any, tmp_path: Path, count: int, requests: int) -> None:
    """First page one plain call, then 50 pages per batch; a short page ends the export."""
    emu = bitrix24_emulator_factory(activities=count, rate_limit=None)
    out = export(emu, tmp_path / "n.jsonl", YEAR_FROM, YEAR_TO)
    assert (out["rows"], out["requests"]) == (count, requests)
    assert out["ids"] == list(range(1, count + 1))
    assert requests <= -(-count // 2500) + 1  # ceil(N/2500) + 1


def test_request_count_for_100k_rows(bitrix24_emulator_factory: Any, tmp_path: Path) -> None:
    # Plain HTTP and no latency: this measures requests, not TLS; 100k rows stay a few seconds.
    emu = bitrix24_emulator_factory(activities=100_000, rate_limit=None, tls=False)
    path = tmp_path / "big.jsonl"
    with client_for(emu) as client:
        before = served(emu)
        result = export_activities(client, updated_from=YEAR_FROM, updated_to=YEAR_TO, path=path)
    assert (result.rows, result.requests) == (100_000, 41)
    assert served(emu) - before == 41
    count, last = 0, 0
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            row_id = json.loads(line)["ID"]
            assert row_id > last
            count, last = count + 1, row_id
    assert (count, last) == (100_000, 100_000)


@pytest.mark.parametrize("portal_offset", ["+03:00", "-05:00", "+05:45", "+00:00"])
def test_boundaries_in_any_portal_offset(
    bitrix24_emulator_factory: Any, tmp_path: Path, portal_offset: str
) -> None:
    emu = bitrix24_emulator_factory(activities=0, rate_limit=None, timezone=portal_offset)
    second = timedelta(seconds=1)
    ids = place(
        emu,
        [START - second, START, START + second, START + HOUR - second, START + HOUR, START + HOUR + second],
    )
    out = export(emu, tmp_path / "b.jsonl", "2024-03-01 00:00:00+00:00", "2024-03-01 01:00:00+00:00")
    assert out["ids"] == ids[1:4]
    offsets = {row["LAST_UPDATED"].isoformat()[-6:] for row in read_jsonl(tmp_path / "b.jsonl")}
    assert offsets == {portal_offset}
    # The same window given in another offset selects the same rows.
    again = export(emu, tmp_path / "b2.jsonl", "2024-03-01T03:00:00+03:00", "2024-02-29T20:00:00-05:00")
    assert again["ids"] == ids[1:4]


def test_consecutive_intervals_cover_every_row_once(bitrix24_emulator_factory: Any, tmp_path: Path) -> None:
    emu = bitrix24_emulator_factory(activities=0, rate_limit=None, timezone="+03:00")
    # 1,200 rows every 18 s over 6 hours: many exactly on an hour boundary.
    ids = place(emu, [START + n * timedelta(seconds=18) for n in range(1200)])
    seen: list[int] = []
    for hour in range(7):
        seen += export(emu, tmp_path / f"{hour}.jsonl", START + hour * HOUR, START + (hour + 1) * HOUR)["ids"]
    assert sorted(seen) == ids
    assert len(seen) == len(set(seen))


def test_crash_mid_export_leaves_nothing_and_a_rerun_replaces(
    bitrix24_emulator_factory: Any, tmp_path: Path
) -> None:
    emu = bitrix24_emulator_factory(activities=8000, rate_limit=None)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    path = out_dir / "crash.jsonl"
    path.write_text("previous\n")
    with client_for(emu) as client:
        pages = client.iter_list

        def iter_list(method: str, params: Any = None) -> Iterator[Any]:
            for n, row in enumerate(pages(method, params), start=1):
                if n == 2550:  # after the first page and one full batch: the next batch fails
                    emu.faults.add("http_500_json", method="batch", times=1)
                yield row

        client.iter_list = iter_list  # type: ignore[method-assign]
        with pytest.raises(Bitrix24ServerError):  # one chain (slices=1): the client's iter_list
            export_activities(client, updated_from=YEAR_FROM, updated_to=YEAR_TO, path=path, slices=1)
    assert path.read_text() == "previous\n"
    assert [p.name for p in out_dir.iterdir()] == ["crash.jsonl"]
    out = export(emu, path, YEAR_FROM, YEAR_TO)
    assert out["ids"] == list(range(1, 8001))
    assert [p.name for p in out_dir.iterdir()] == ["crash.jsonl"]


def test_operator_with_the_connection(
    bitrix24_emulator_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = bitrix24_emulator_factory(activities=3000, rate_limit=None)
    conn = emu.connection()
    conn["extra"] = {**conn["extra"], "max_retries": 0, "rate_limit": 0}
    monkeypatch.setenv("AIRFLOW_CONN_BITRIX24_DEFAULT", json.dumps(conn))
    window = {"updated_from": "2024-01-01 00:00:00+00:00", "updated_to": "2024-07-01 00:00:00+00:00"}
    expected = sorted(
        int(row["ID"])
        for row in (emu.store.get(i) for i in emu.store.ids())
        if row is not None
        and datetime.fromisoformat(row["LAST_UPDATED"]) < datetime(2024, 7, 1, tzinfo=UTC)
        and row["TYPE_ID"] == "2"
    )
    before = served(emu)
    op = Bitrix24ExportActivitiesOperator(
        task_id="export",
        path=str(tmp_path / "h1.csv"),
        format="csv",
        filter={"TYPE_ID": 2},
        select=["SUBJECT", "LAST_UPDATED", "TYPE_ID", "COMMUNICATIONS"],
        **window,
    )
    result = op.execute({})  # type: ignore[arg-type]
    assert result["rows"] == len(expected) and result["requests"] == served(emu) - before
    with (tmp_path / "h1.csv").open(newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == ["ID", "SUBJECT", "LAST_UPDATED", "TYPE_ID", "COMMUNICATIONS"]
    assert [int(r["ID"]) for r in table] == expected
    assert all(isinstance(json.loads(r["COMMUNICATIONS"]), list) for r in table)

    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    Bitrix24ExportActivitiesOperator(
        task_id="p", path=str(tmp_path / "h1.parquet"), format="parquet", **window
    ).execute(
        {}  # type: ignore[arg-type]
    )
    assert pq.read_table(tmp_path / "h1.parquet").num_rows == sum(
        1
        for i in emu.store.ids()
        if datetime.fromisoformat(emu.store.get(i)["LAST_UPDATED"]) < datetime(2024, 7, 1, tzinfo=UTC)  # type: ignore[index]
    )


def test_operator_auth_error_fails_without_retries(
    bitrix24_emulator_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = bitrix24_emulator_factory(activities=10, rate_limit=None)
    conn = emu.connection()
    conn["password"] = "wrongcode12345678"
    conn["extra"] = {**conn["extra"], "max_retries": 0, "rate_limit": 0}
    monkeypatch.setenv("AIRFLOW_CONN_BITRIX24_DEFAULT", json.dumps(conn))
    op = Bitrix24ExportActivitiesOperator(
        task_id="export", path=str(tmp_path / "x.jsonl"), updated_from=YEAR_FROM, updated_to=YEAR_TO
    )
    with pytest.raises(AirflowFailException):
        op.execute({})  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_narrowing_filters_are_anded_with_the_window(bitrix24_emulator_factory: Any, tmp_path: Path) -> None:
    emu = bitrix24_emulator_factory(activities=0, rate_limit=None)
    ids = place(emu, [START + n * timedelta(seconds=30) for n in range(200)])  # 100 minutes
    out = export(
        emu,
        tmp_path / "f.jsonl",
        START,
        START + HOUR,
        filter={">=ID": ids[10], "<=LAST_UPDATED": (START + timedelta(minutes=30)).isoformat()},
    )
    assert out["ids"] == ids[10:61]  # ID >= the 11th, LAST_UPDATED <= 00:30:00 (inclusive)


def test_activities_the_portal_lists_twice_are_written_once(
    bitrix24_emulator_factory: Any, tmp_path: Path
) -> None:
    """A ``BINDINGS`` filter with two matching owner pairs makes the portal list an activity twice;
    the client's keyset paging drops the repeat (the export has no second de-duplication)."""
    emu = bitrix24_emulator_factory(activities=0, rate_limit=None)
    ids = place(emu, [START + n * timedelta(seconds=10) for n in range(120)])
    bindings = [{"OWNER_TYPE_ID": 2, "OWNER_ID": 1}, {"OWNER_TYPE_ID": 2}]
    with client_for(emu) as client:
        page = client.call("crm.activity.list", {"filter": {"BINDINGS": bindings}, "order": {"ID": "ASC"}})
    assert [int(row["ID"]) for row in page[:4]] == [ids[0], ids[0], ids[1], ids[1]]  # the portal repeats
    out = export(emu, tmp_path / "b.jsonl", START, START + HOUR, filter={"BINDINGS": bindings})
    assert out["ids"] == ids
    assert out["rows"] == 120


def _window_ids(emu: Bitrix24Emulator) -> list[int]:
    hidden = emu.store.hidden_ids()
    return [i for i in emu.store.sorted_ids() if i not in hidden]


@pytest.mark.parametrize("slices", [2, 4, 7])
def test_parallel_slices_write_every_row_once_in_id_order(
    bitrix24_emulator_factory: Any, tmp_path: Path, slices: int
) -> None:
    """K slices at once: every row of the emulator's store once, in ID order, the same file as one
    chain, and requests ≤ ceil(N/2500) + K + 2 (one probe, then per slice floor(n/2500) + 1)."""
    emu = bitrix24_emulator_factory(activities=30_000, rate_limit=None, tls=False)
    for gone in range(7000, 9500):  # a gap of deleted IDs inside a slice
        emu.store.delete(gone)
    expected = _window_ids(emu)
    parallel = export(emu, tmp_path / "p.jsonl", YEAR_FROM, YEAR_TO, slices=slices)
    assert parallel["ids"] == expected
    assert parallel["requests"] <= -(-len(expected) // 2500) + slices + 2
    with emu.store.lock:
        stored = {i: emu.store.row(i) for i in expected}
    for row in read_jsonl(tmp_path / "p.jsonl"):
        assert row["SUBJECT"] == stored[row["ID"]]["SUBJECT"]  # type: ignore[index]
    one_chain = export(emu, tmp_path / "s.jsonl", YEAR_FROM, YEAR_TO, slices=1)
    assert (tmp_path / "p.jsonl").read_bytes() == (tmp_path / "s.jsonl").read_bytes()
    assert one_chain["requests"] == -(-(len(expected) - 50) // 2500) + 1


def test_parallel_slice_failure_mid_export_leaves_nothing(
    bitrix24_emulator_factory: Any, tmp_path: Path
) -> None:
    emu = bitrix24_emulator_factory(activities=20_000, rate_limit=None, tls=False)
    path = tmp_path / "crash.jsonl"
    with client_for(emu) as client:
        send = client.batch
        calls = 0

        def batch(commands: Any, *, halt: bool = False) -> Any:
            nonlocal calls
            calls += 1
            if calls == 4:  # the probe and two slices' first batches went through
                emu.faults.add("http_500_json", method="batch", times=1)
            return send(commands, halt=halt)

        client.batch = batch  # type: ignore[method-assign]
        with pytest.raises(Bitrix24ServerError):
            export_activities(client, updated_from=YEAR_FROM, updated_to=YEAR_TO, path=path, slices=4)
    assert list(tmp_path.iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("b24-export-slice")]


def test_slices_must_be_a_positive_integer(bitrix24_emulator_factory: Any, tmp_path: Path) -> None:
    emu = bitrix24_emulator_factory(activities=10, rate_limit=None)
    with client_for(emu) as client, pytest.raises(ValueError, match="slices must be a positive integer"):
        export_activities(client, updated_from=YEAR_FROM, updated_to=YEAR_TO, path=tmp_path / "x", slices=0)
    assert served(emu) == 0


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_written_bytes_are_the_typed_encoding_of_the_portals_rows(
    bitrix24_emulator_factory: Any, tmp_path: Path, fmt: str
) -> None:
    """The JSON lines of the parallel export (encoded straight from the wire rows) and the CSV (parsed
    rows) are byte for byte what the typed path writes for the rows ``crm.activity.list`` returns."""
    from airflow_provider_b24.activities import parse_activity
    from airflow_provider_b24.export import csv_header, encode_json, open_writer

    emu = bitrix24_emulator_factory(activities=12_000, rate_limit=None, tls=False, timezone="-03:30")
    path = tmp_path / f"all.{fmt}"
    with client_for(emu) as client:
        export_activities(client, updated_from=YEAR_FROM, updated_to=YEAR_TO, path=path, format=fmt, slices=4)
        params = {
            "filter": {">=LAST_UPDATED": YEAR_FROM.isoformat(), "<LAST_UPDATED": YEAR_TO.isoformat()},
            "select": ["*"],
            "order": {"ID": "ASC"},
        }
        wire = list(client.iter_list("crm.activity.list", params))
    assert len(wire) == 12_000
    if fmt == "jsonl":
        expected = "".join(encode_json(parse_activity(row)) + "\n" for row in wire).encode("utf-8")
    else:
        import io

        buffer = io.BytesIO()
        writer = open_writer("csv", buffer, ["*"])
        assert writer.header == csv_header(["*"])  # type: ignore[attr-defined]
        for row in wire:
            writer.write(parse_activity(row))
        writer.close()
        expected = buffer.getvalue()
    assert path.read_bytes() == expected
