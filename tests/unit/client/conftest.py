"""Fixtures for client unit tests: a fake clock (no real sleeping), fresh limiters, a client factory."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_b24.client import Bitrix24Client, ClientConfig, WebhookAuth
from airflow_provider_b24.client.limiter import LimiterRegistry
from tests.unit.client.b24_client_helpers import CODE, PORTAL, FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry() -> LimiterRegistry:
    return LimiterRegistry()


@pytest.fixture
def make_client(clock: FakeClock, registry: LimiterRegistry) -> Callable[..., Bitrix24Client]:
    def factory(auth: Any = None, base_url: str = PORTAL, **config: Any) -> Bitrix24Client:
        return Bitrix24Client(
            base_url,
            auth or WebhookAuth(user_id="1", code=CODE),
            ClientConfig(**config),
            logger=logging.getLogger("test.bitrix24"),
            clock=clock,
            limiters=registry,
            rng=random.Random(7),
        )

    return factory


@pytest.fixture
def client(make_client: Callable[..., Bitrix24Client]) -> Bitrix24Client:
    return make_client()
