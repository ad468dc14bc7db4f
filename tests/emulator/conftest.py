"""Shared helpers for the emulator tests: real HTTPS calls with ``requests`` (never our client)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from airflow_provider_b24.testing import Bitrix24Emulator


class Caller:
    """POSTs JSON to the emulator over HTTPS with a keep-alive session trusting its CA."""

    def __init__(self, emu: Bitrix24Emulator) -> None:
        self.emu = emu
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would override session.verify
        self.session.verify = emu.ca_cert if emu.tls else True

    def post(self, method: str, params: Any = None, **kwargs: Any) -> requests.Response:
        return self.session.post(self.emu.webhook_url + method, json=params or {}, timeout=10, **kwargs)

    def ok(self, method: str, params: Any = None) -> dict[str, Any]:
        response = self.post(method, params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "error" not in body, body
        return body

    def oauth(self, method: str, params: dict[str, Any], token: str) -> requests.Response:
        return self.session.post(self.emu.oauth_url + method, json={**params, "auth": token}, timeout=10)

    def close(self) -> None:
        self.session.close()


@pytest.fixture(scope="module")
def shared_emu() -> Iterator[Bitrix24Emulator]:
    """A read-mostly emulator shared by a module (1000 activities, seed 1). Don't mutate it."""
    with Bitrix24Emulator(activities=1000, seed=1) as emu:
        yield emu


@pytest.fixture
def api(shared_emu: Bitrix24Emulator) -> Iterator[Caller]:
    caller = Caller(shared_emu)
    yield caller
    caller.close()


@pytest.fixture
def fresh(bitrix24_emulator_factory: Any) -> Iterator[Caller]:
    """A caller on a fresh emulator (200 activities) that tests may mutate."""
    caller = Caller(bitrix24_emulator_factory(activities=200, seed=3))
    yield caller
    caller.close()
