"""The ``bitrix24`` asset URI scheme (handler, factory, OpenLineage converter) and its registration."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from airflow_provider_b24 import get_provider_info
from airflow_provider_b24.lineage import (
    convert_asset_to_openlineage,
    create_asset,
    report_hook_lineage,
    sanitize_uri,
)


def test_sanitize_uri_keeps_host_port_and_dataset() -> None:
    clean = sanitize_uri(urlsplit("bitrix24://Example.Bitrix24.com:443/crm.activity/"))
    assert clean.geturl() == "bitrix24://example.bitrix24.com/crm.activity"
    assert sanitize_uri(urlsplit("bitrix24://127.0.0.1:8443/crm.deal")).geturl() == (
        "bitrix24://127.0.0.1:8443/crm.deal"
    )


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("bitrix24:///crm.activity", "portal host"),
        ("bitrix24://example.bitrix24.com", "needs a dataset"),
        ("bitrix24://1:code@example.bitrix24.com/crm.activity", "user info"),
    ],
)
def test_sanitize_uri_refuses(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sanitize_uri(urlsplit(uri))


def test_factory_and_converter() -> None:
    asset = create_asset(portal="https://example.bitrix24.com")
    assert asset.uri == "bitrix24://example.bitrix24.com/crm.activity"
    dataset = convert_asset_to_openlineage(asset, None)
    assert (dataset.namespace, dataset.name) == ("bitrix24://example.bitrix24.com", "crm.activity")


def test_airflow_uses_the_provider_for_the_scheme() -> None:
    """Registered through ``asset-uris``: Airflow normalises the URIs, OpenLineage converts them."""
    from airflow.sdk import Asset

    (entry,) = get_provider_info()["asset-uris"]
    assert entry["schemes"] == ["bitrix24"]
    asset = Asset(uri="bitrix24://Example.Bitrix24.com/crm.activity")
    assert asset.normalized_uri == "bitrix24://example.bitrix24.com/crm.activity"
    from airflow.providers.openlineage.utils.utils import translate_airflow_asset

    dataset = translate_airflow_asset(asset, None)
    assert (dataset.namespace, dataset.name) == ("bitrix24://example.bitrix24.com", "crm.activity")


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.inputs: list[tuple[Any, str]] = []
        self.outputs: list[tuple[Any, str]] = []
        self.fail = fail

    def add_input_asset(self, *, context: Any, uri: str) -> None:
        if self.fail:
            raise RuntimeError("collector broken")
        self.inputs.append((context, uri))

    def add_output_asset(self, *, context: Any, uri: str) -> None:
        self.outputs.append((context, uri))


def test_report_once_per_dataset_and_never_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    import airflow.providers.common.compat.lineage.hook as compat

    recorder = Recorder()
    monkeypatch.setattr(compat, "get_hook_lineage_collector", lambda: recorder)
    hook, reported = object(), set()  # type: ignore[var-annotated]
    for method in ("crm.activity.list", "crm.activity.get", "crm.activity.fields", "crm.deal.add", "profile"):
        report_hook_lineage(hook, "https://example.bitrix24.com", method, reported)
    report_hook_lineage(hook, "https://example.bitrix24.com", "crm.activity.list", reported)
    assert recorder.inputs == [(hook, "bitrix24://example.bitrix24.com/crm.activity")]
    assert recorder.outputs == [(hook, "bitrix24://example.bitrix24.com/crm.deal")]

    monkeypatch.setattr(compat, "get_hook_lineage_collector", lambda: Recorder(fail=True))
    report_hook_lineage(hook, "https://example.bitrix24.com", "user.get", set())  # logged, not raised
