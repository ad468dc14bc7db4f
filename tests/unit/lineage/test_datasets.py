"""Dataset naming (airflow_provider_b24.datasets): portals, REST methods, files, assets, schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_b24.activities.fields import ACTIVITY_FIELD_TYPES, STAR_FIELDS
from airflow_provider_b24.datasets import (
    DatasetName,
    activity_fields,
    export_asset_uri,
    file_dataset,
    file_uri,
    portal_dataset,
    portal_namespace,
    rest_dataset,
    written_fields,
)


@pytest.mark.parametrize(
    ("portal", "namespace"),
    [
        ("https://Example.Bitrix24.com", "bitrix24://example.bitrix24.com"),
        ("https://example.bitrix24.com:443", "bitrix24://example.bitrix24.com"),
        ("example.bitrix24.com", "bitrix24://example.bitrix24.com"),
        ("http://127.0.0.1:8443", "bitrix24://127.0.0.1:8443"),
        ("http://crm.local:80", "bitrix24://crm.local"),
        ("https://[::1]:9000", "bitrix24://[::1]:9000"),
        # Whatever else a URL holds, only the authority is kept: never a webhook path or user info.
        (
            "https://1:s3cr3tc0de@example.bitrix24.com/rest/1/s3cr3tc0de/?auth=t0ken",
            "bitrix24://example.bitrix24.com",
        ),
    ],
)
def test_portal_namespace_is_the_host_only(portal: str, namespace: str) -> None:
    assert portal_namespace(portal) == namespace


def test_portal_namespace_needs_a_host() -> None:
    with pytest.raises(ValueError, match="no portal host"):
        portal_namespace("https://")


def test_portal_dataset_and_uri() -> None:
    dataset = portal_dataset("https://example.bitrix24.com")
    assert dataset == DatasetName("bitrix24://example.bitrix24.com", "crm.activity")
    assert dataset.uri == "bitrix24://example.bitrix24.com/crm.activity"


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("crm.activity.list", ("input", "crm.activity")),
        ("crm.activity.get", ("input", "crm.activity")),
        ("CRM.Activity.List", ("input", "crm.activity")),
        ("crm.activity.list?filter[ID]=1", ("input", "crm.activity")),
        ("crm.deal.list", ("input", "crm.deal")),
        ("user.get", ("input", "user")),
        ("crm.activity.add", ("output", "crm.activity")),
        ("crm.activity.update", ("output", "crm.activity")),
        ("crm.activity.delete", ("output", "crm.activity")),
        ("crm.activity.fields", None),
        ("crm.activity.communication.fields", None),
        ("profile", None),
        ("app.info", None),
        ("batch", None),
        ("crm.activity.list/../x", None),
        ("", None),
    ],
)
def test_rest_dataset(method: str, expected: Any) -> None:
    assert rest_dataset(method) == expected


def test_star_is_the_documented_default_set_with_catalogue_types() -> None:
    fields = activity_fields(["*"])
    assert [f.name for f in fields] == list(STAR_FIELDS)
    assert all(f.type == ACTIVITY_FIELD_TYPES[f.name] for f in fields)
    assert "COMMUNICATIONS" not in [f.name for f in fields]  # select-only: must be named


def test_selected_fields_only_nested_and_unknown() -> None:
    fields = activity_fields(["ID", "subject", "COMMUNICATIONS", "UF_CRM_1"])
    assert [(f.name, f.type) for f in fields] == [
        ("ID", "integer"),
        ("SUBJECT", "string"),
        ("COMMUNICATIONS", "crm_activity_communication"),
        ("UF_CRM_1", None),
    ]
    assert [c.name for c in fields[2].fields][:4] == ["ID", "ACTIVITY_ID", "TYPE", "VALUE"]
    star_plus = activity_fields(["*", "COMMUNICATIONS"])
    assert [f.name for f in star_plus] == [*STAR_FIELDS, "COMMUNICATIONS"]


def test_written_types_follow_the_format() -> None:
    select = ["ID", "COMPLETED", "START_TIME", "RESULT_SUM", "OWNER_TYPE_ID", "SETTINGS", "COMMUNICATIONS"]
    jsonl = {f.name: f for f in written_fields(select, "jsonl")}
    assert {n: f.type for n, f in jsonl.items()} == {
        "ID": "integer",
        "COMPLETED": "boolean",
        "START_TIME": "timestamp",
        "RESULT_SUM": "decimal",
        "OWNER_TYPE_ID": "integer",
        "SETTINGS": "object",
        "COMMUNICATIONS": "array",
    }
    nested = {c.name: c.type for c in jsonl["COMMUNICATIONS"].fields}
    assert nested["ENTITY_TYPE_ID"] == "integer" and nested["ENTITY_SETTINGS"] == "object"
    csv = {f.name: f for f in written_fields(select, "csv")}
    assert csv["COMMUNICATIONS"].type == "string" and csv["COMMUNICATIONS"].fields == ()
    assert csv["SETTINGS"].type == "string"


class FakeObjectStoragePath:
    """What ``airflow.sdk.ObjectStoragePath`` looks like to the naming: ``protocol`` and ``str``."""

    def __init__(self, url: str, protocol: str) -> None:
        self.url, self.protocol = url, protocol

    def __str__(self) -> str:
        return self.url


@pytest.mark.parametrize(
    ("path", "namespace", "name"),
    [
        ("/data/b24/a.jsonl", "file", "/data/b24/a.jsonl"),
        ("file:///data/b24/a.jsonl", "file", "/data/b24/a.jsonl"),
        ("s3://bucket/b24/a.jsonl", "s3://bucket", "b24/a.jsonl"),
        ("s3://aws_conn@bucket/b24/a.jsonl", "s3://bucket", "b24/a.jsonl"),  # a conn_id is no name
        ("s3a://bucket/a.csv", "s3://bucket", "a.csv"),
        ("gs://bucket/x/a.parquet", "gs://bucket", "x/a.parquet"),
        ("gcs://bucket/x/a.parquet", "gs://bucket", "x/a.parquet"),
        (FakeObjectStoragePath("s3://aws@bucket/k/a.jsonl", "s3"), "s3://bucket", "k/a.jsonl"),
    ],
)
def test_file_dataset_follows_openlineage_naming(path: Any, namespace: str, name: str) -> None:
    assert file_dataset(path) == DatasetName(namespace, name)


def test_relative_and_pathlib_paths_are_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert file_dataset("out/a.jsonl") == DatasetName("file", str(tmp_path / "out" / "a.jsonl"))
    assert file_dataset(tmp_path / "b.csv") == DatasetName("file", str(tmp_path / "b.csv"))
    assert file_uri("out/a.jsonl") == f"file://{tmp_path}/out/a.jsonl"
    assert file_uri("s3://conn@bucket/k.jsonl") == "s3://bucket/k.jsonl"


@pytest.mark.parametrize(
    ("path", "uri"),
    [
        ("/data/b24/activities.jsonl", "file:///data/b24/activities.jsonl"),
        ("/data/b24/{{ ds }}/a_{{ ts_nodash }}.jsonl", "file:///data/b24"),
        ("/data/b24/a_{{ ds }}.jsonl", "file:///data/b24"),
        ("file:///data/b24/{% if 1 %}x{% endif %}.jsonl", "file:///data/b24"),
        ("s3://aws@bucket/b24/{{ ds }}.jsonl", "s3://bucket/b24"),
        ("s3://bucket/{{ ds }}.jsonl", "s3://bucket/"),
        ("{{ var.value.root }}/a.jsonl", None),  # nothing fixed
        ("exports/{{ ds }}.jsonl", None),  # relative: depends on the worker's directory
        ("a.jsonl", None),
    ],
)
def test_export_asset_uri(path: str, uri: str | None) -> None:
    assert export_asset_uri(path) == uri


def test_export_asset_uri_of_objects() -> None:
    assert export_asset_uri(Path("/data/a.jsonl")) == "file:///data/a.jsonl"
    assert export_asset_uri(FakeObjectStoragePath("s3://c@b/k.jsonl", "s3")) == "s3://b/k.jsonl"
    assert export_asset_uri(object()) is None  # e.g. an XComArg
