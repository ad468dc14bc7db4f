"""Hook unit tests: connections from AIRFLOW_CONN_* env vars, fresh shared limiters per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_b24.client import DEFAULT_REGISTRY


@pytest.fixture(autouse=True)
def _fresh_limiters() -> Iterator[None]:
    """The hook uses the process-wide limiter registry; start every test with empty buckets."""
    DEFAULT_REGISTRY.clear()
    yield
    DEFAULT_REGISTRY.clear()
