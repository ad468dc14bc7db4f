"""The ``portal`` fixture: every ``Bitrix24Hook`` the triggers build is a fake served from one Portal.

The connections the tests use (``bitrix24_default``, ``a``, ``b``) exist as ``AIRFLOW_CONN_*``
variables: the poller resolves them with Airflow's ``aget_connection`` on the event loop before it
builds the (fake) hook with them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.triggers.fakes import FakeHook, Portal

CONNECTIONS = ("bitrix24_default", "a", "b")


@pytest.fixture
def portal(monkeypatch: pytest.MonkeyPatch) -> Portal:
    portal = Portal()
    for conn_id in CONNECTIONS:
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}",
            json.dumps(
                {"conn_type": "bitrix24", "host": f"https://{conn_id}.bitrix24.example", "login": "1"}
            ),
        )

    def hook(*, bitrix24_conn_id: str, **kwargs: Any) -> FakeHook:
        return FakeHook(portal, bitrix24_conn_id, **kwargs)

    monkeypatch.setattr("airflow_provider_b24.hooks.bitrix24.Bitrix24Hook", hook)
    monkeypatch.setattr("airflow_provider_b24.client.errors.OPERATING_RESET_MARGIN_S", 0.01)
    return portal
