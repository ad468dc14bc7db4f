"""Bitrix24ExportActivitiesOperator: construction, templating, failure semantics, XCom, on_kill."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
import pytest

from airflow_provider_b24._compat import AirflowFailException
from airflow_provider_b24.client.errors import Bitrix24AccessDenied, Bitrix24ServerError
from airflow_provider_b24.export import ExportCancelled, read_jsonl
from airflow_provider_b24.operators.export import Bitrix24ExportActivitiesOperator
from tests.unit.export.export_fakes import FakeListClient, spread_rows

FROM = "2024-01-01 00:00:00+00:00"
TO = "2024-01-01 01:00:00+00:00"


class FakeHook:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.get_conn_calls = 0

    def get_conn(self) -> Any:
        self.get_conn_calls += 1
        return self.client


def make(
    tmp_path: Path, client: Any = None, **kwargs: Any
) -> tuple[Bitrix24ExportActivitiesOperator, FakeHook]:
    arguments: dict[str, Any] = {
        "task_id": "export",
        "updated_from": FROM,
        "updated_to": TO,
        "path": str(tmp_path / "out.jsonl"),
        **kwargs,
    }
    op = Bitrix24ExportActivitiesOperator(**arguments)
    hook = FakeHook(client if client is not None else FakeListClient(spread_rows(100)))
    op.__dict__["hook"] = hook  # the cached_property, pre-filled
    return op, hook


def test_template_fields_and_defaults(tmp_path: Path) -> None:
    assert Bitrix24ExportActivitiesOperator.template_fields == (
        "bitrix24_conn_id",
        "updated_from",
        "updated_to",
        "filter",
        "select",
        "path",
    )
    op = Bitrix24ExportActivitiesOperator(task_id="t", updated_from=FROM, updated_to=TO, path="x.jsonl")
    assert (op.bitrix24_conn_id, op.format, op.filter, op.select) == ("bitrix24_default", "jsonl", None, None)
    assert "hook" not in op.__dict__  # created lazily


def test_constructor_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        Bitrix24ExportActivitiesOperator("t", FROM, TO)  # type: ignore[misc]


@pytest.mark.parametrize("fmt", ["xlsx", "json", ""])
def test_unknown_format_fails_at_construction(fmt: str) -> None:
    with pytest.raises(ValueError, match="'jsonl', 'csv', 'parquet'"):
        Bitrix24ExportActivitiesOperator(task_id="t", updated_from=FROM, updated_to=TO, path="x", format=fmt)


def test_parquet_without_pyarrow_fails_at_execute_naming_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("airflow_provider_b24.export.writers.parquet_available", lambda: False)
    op, hook = make(tmp_path, format="parquet")
    with pytest.raises(AirflowFailException, match="pyarrow"):
        op.execute({})
    assert hook.get_conn_calls == 0


def test_execute_writes_the_file_and_returns_a_small_xcom(tmp_path: Path) -> None:
    op, _ = make(tmp_path)
    result = op.execute({})
    assert result == {
        "path": str(tmp_path / "out.jsonl"),
        "rows": 100,
        "requests": 2,
        "updated_from": "2024-01-01T00:00:00+00:00",
        "updated_to": "2024-01-01T01:00:00+00:00",
    }
    assert [row["ID"] for row in read_jsonl(tmp_path / "out.jsonl")] == list(range(1, 101))


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"updated_from": "2024-01-01 00:00:00"}, "no UTC offset"),
        ({"updated_from": "None"}, "'None'"),
        ({"updated_to": FROM}, "must be before"),
        ({"filter": {"<LAST_UPDATED": TO}}, "'<LAST_UPDATED'"),
        ({"select": "[1, 2"}, "select"),
        ({"path": ""}, "path is empty"),
    ],
)
def test_bad_arguments_fail_without_retries_before_any_request(
    tmp_path: Path, kwargs: dict[str, Any], fragment: str
) -> None:
    client = FakeListClient(spread_rows(10))
    op, _ = make(tmp_path, client, **kwargs)
    with pytest.raises(AirflowFailException, match=r"^export failed: ") as err:
        op.execute({})
    assert fragment in str(err.value)
    assert client.stats.requests == 0
    assert list(tmp_path.iterdir()) == []


def test_access_errors_fail_without_retries_and_transient_ones_propagate(tmp_path: Path) -> None:
    class Failing(FakeListClient):
        def __init__(self, error: Exception) -> None:
            super().__init__([])
            self.error = error

        def iter_list(self, method: str, params: Any = None) -> Iterator[dict[str, Any]]:
            raise self.error
            yield {}

    op, _ = make(tmp_path, Failing(Bitrix24AccessDenied("Access denied.")))
    with pytest.raises(AirflowFailException, match="Access denied"):
        op.execute({})
    op, _ = make(tmp_path, Failing(Bitrix24ServerError("boom", http_status=500)))
    with pytest.raises(Bitrix24ServerError):
        op.execute({})
    assert list(tmp_path.iterdir()) == []


def test_on_kill_stops_the_export_and_removes_the_temp_file(tmp_path: Path) -> None:
    client = FakeListClient(spread_rows(3000, step=timedelta(seconds=1)))
    op, _ = make(tmp_path, client)
    original = client.iter_list

    def iter_list(method: str, params: Any = None) -> Iterator[dict[str, Any]]:
        for n, row in enumerate(original(method, params)):
            if n == 1000:
                temps = [p.name for p in tmp_path.iterdir()]
                assert len(temps) == 1 and temps[0].startswith(".out.jsonl.tmp-")
                op.on_kill()  # Airflow calls it from its SIGTERM handler
                assert list(tmp_path.iterdir()) == []
            yield row

    client.iter_list = iter_list  # type: ignore[method-assign]
    with pytest.raises(ExportCancelled):
        op.execute({})
    assert list(tmp_path.iterdir()) == []
    op.on_kill()  # harmless when nothing runs


def test_object_storage_url(tmp_path: Path) -> None:
    import fsspec
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.io import attach

    fs = fsspec.filesystem("memory")
    attach("memory", fs=fs)
    url = f"memory://bucket/op-{os.getpid()}/2024-01-01/out.jsonl"
    op, _ = make(tmp_path, path=url)
    try:
        result = op.execute({})
        assert (result["rows"], result["path"]) == (100, url)
        path = ObjectStoragePath(url)
        assert path.read_text().count("\n") == 100
        assert [p.name for p in path.parent.iterdir()] == ["out.jsonl"]
    finally:
        fs.rm(f"/bucket/op-{os.getpid()}", recursive=True)


def test_templates_render_from_the_data_interval(tmp_path: Path) -> None:
    from airflow.sdk import DAG

    with DAG("export_templates", schedule=None, start_date=pendulum.datetime(2024, 1, 1)):
        op = Bitrix24ExportActivitiesOperator(
            task_id="t",
            bitrix24_conn_id="{{ params.conn }}",
            updated_from="{{ data_interval_start }}",
            updated_to="{{ data_interval_end }}",
            filter={"TYPE_ID": "{{ params.type_id }}"},
            select=["SUBJECT", "{{ params.field }}"],
            path=str(tmp_path) + "/{{ ds }}/{{ run_id }}.csv",
            format="csv",
            params={"conn": "b24_prod", "type_id": 2, "field": "LAST_UPDATED"},
        )
    start = pendulum.datetime(2024, 1, 1, 5)
    context: dict[str, Any] = {
        "data_interval_start": start,
        "data_interval_end": start.add(hours=1),
        "ds": "2024-01-01",
        "run_id": "scheduled__2024-01-01T05:00:00+00:00",
        "params": {"conn": "b24_prod", "type_id": 2, "field": "LAST_UPDATED"},
    }
    op.render_template_fields(context)  # type: ignore[arg-type]
    assert op.bitrix24_conn_id == "b24_prod"
    assert op.updated_from == "2024-01-01 05:00:00+00:00"
    assert op.filter == {"TYPE_ID": "2"} and op.select == ["SUBJECT", "LAST_UPDATED"]
    assert op.path == f"{tmp_path}/2024-01-01/scheduled__2024-01-01T05:00:00+00:00.csv"
    op.__dict__["hook"] = FakeHook(FakeListClient(spread_rows(5, start=start)))
    result = op.execute(context)  # type: ignore[arg-type]
    assert result["rows"] == 5 and result["updated_from"] == "2024-01-01T05:00:00+00:00"
    assert Path(op.path).read_text().splitlines()[0] == "ID,SUBJECT,LAST_UPDATED"
