"""The ``portal`` fixture: every ``Bitrix24Hook`` the triggers build is a fake served from one Portal."""

from __future__ import annotations

import pytest

from tests.unit.triggers.fakes import FakeHook, Portal


@pytest.fixture
def portal(monkeypatch: pytest.MonkeyPatch) -> Portal:
    portal = Portal()
    monkeypatch.setattr(
        "airflow_provider_b24.hooks.bitrix24.Bitrix24Hook",
        lambda *, bitrix24_conn_id: FakeHook(portal, bitrix24_conn_id),
    )
    monkeypatch.setattr("airflow_provider_b24.client.errors.OPERATING_RESET_MARGIN_S", 0.01)
    return portal
