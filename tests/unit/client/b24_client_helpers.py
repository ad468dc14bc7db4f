"""Shared helpers for the client unit tests (``from tests.unit.client.b24_client_helpers import ...``)."""

from __future__ import annotations

from typing import Any

PORTAL = "https://portal.example.com"
CODE = "s3cr3tWebhookCode"
BASE = f"{PORTAL}/rest/1/{CODE}/"


class FakeClock:
    """Monotonic and wall time that only move when the code under test sleeps."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)


def ok(result: Any, **extra: Any) -> dict[str, Any]:
    """A success envelope."""
    return {"json": {"result": result, "time": {"start": 1.0, "finish": 1.1}, **extra}, "status_code": 200}


def err(status: int, code: str, description: str = "", **extra: Any) -> dict[str, Any]:
    """An error response."""
    return {"json": {"error": code, "error_description": description, **extra}, "status_code": status}
