"""Shared helpers of the reliability suite: fast retries, fresh limiters, mid-run fault arming, secrets.

* Every test starts with an empty process-wide limiter registry (the per-portal leaky bucket and
  operating-time tracker must not carry over between tests).
* Retry backoff is shrunk to a few milliseconds: connection extras cannot set it, so
  ``config_from_extra`` is wrapped (the retry *policy* is unchanged, only the sleeps are shorter).
* :func:`arm_after` runs an action when the emulator receives its N+1-th REST request, so a fault can
  hit a workload in the middle of its run (page 2 of an export, the second poke...).
* :func:`assert_no_secrets` scans texts for every credential of an emulator.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from airflow_provider_b24.client import DEFAULT_REGISTRY
from airflow_provider_b24.client import config as client_config
from airflow_provider_b24.testing import Bitrix24Emulator

CONN_ENV = "AIRFLOW_CONN_BITRIX24_DEFAULT"
TOKEN_VAR_ENV = "AIRFLOW_VAR_BITRIX24_TOKEN__BITRIX24_DEFAULT"

#: Connection extras of the matrix: client retries on, limiter off (cells that test limits set them),
#: a 1 s read timeout (the read-timeout fault delays 1.6 s).
BASE_EXTRA: dict[str, Any] = {"max_retries": 3, "rate_limit": 0, "operating_max_wait": 5, "timeout": 1.0}

_ORIGINAL_CONFIG_FROM_EXTRA = client_config.config_from_extra


def fast_config_from_extra(extra: Any) -> client_config.ClientConfig:
    """``config_from_extra`` with millisecond retry backoff (the policy itself is untouched)."""
    return dataclasses.replace(_ORIGINAL_CONFIG_FROM_EXTRA(extra), backoff_base=0.005, backoff_max=0.02)


@pytest.fixture(autouse=True)
def _fresh_limiters_and_fast_backoff(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    DEFAULT_REGISTRY.clear()
    monkeypatch.setattr(client_config, "config_from_extra", fast_config_from_extra)
    monkeypatch.delenv(TOKEN_VAR_ENV, raising=False)
    yield
    DEFAULT_REGISTRY.clear()
    os.environ.pop(TOKEN_VAR_ENV, None)  # also when set from an emulator thread


def use_connection(
    emu: Bitrix24Emulator, monkeypatch: pytest.MonkeyPatch, *, oauth: bool = False, **extra: Any
) -> dict[str, Any]:
    """Point ``bitrix24_default`` at ``emu`` (webhook, or OAuth with a freshly issued token pair)."""
    conn = emu.oauth_connection() if oauth else emu.connection()
    conn["extra"] = {**conn["extra"], **BASE_EXTRA, **extra}
    monkeypatch.setenv(CONN_ENV, json.dumps(conn))
    return conn


# --------------------------------------------------------------------------------------------- arming
class Armed:
    """Runs ``action`` once, when the emulator is about to answer REST request number ``after + 1``."""

    def __init__(self, emu: Bitrix24Emulator, after: int, action: Callable[[], None]) -> None:
        self.emu = emu
        self.after = after
        self.action = action
        self.seen = 0
        self.fired = threading.Event()
        self._lock = threading.Lock()
        portal = emu.portal
        self._original = portal.handle

        def handle(request: Any) -> Any:
            if request.path.startswith("/rest/"):
                with self._lock:
                    self.seen += 1
                    fire = self.seen == self.after + 1 and not self.fired.is_set()
                    if fire:
                        self.fired.set()
                        self.action()
            return self._original(request)

        portal.handle = handle  # an instance attribute shadows the method; the server looks it up per request

    def disarm(self) -> None:
        self.emu.portal.__dict__.pop("handle", None)


@pytest.fixture
def arm() -> Iterator[Callable[[Bitrix24Emulator, int, Callable[[], None]], Armed]]:
    """``arm(emu, after, action)``: run ``action`` when REST request ``after + 1`` arrives."""
    armed: list[Armed] = []

    def factory(emu: Bitrix24Emulator, after: int, action: Callable[[], None]) -> Armed:
        item = Armed(emu, after, action)
        armed.append(item)
        return item

    yield factory
    for item in reversed(armed):
        item.disarm()


# --------------------------------------------------------------------------------------------- secrets
def emulator_secrets(emu: Bitrix24Emulator) -> list[str]:
    """The webhook code, the client secret and every OAuth token the emulator ever issued."""
    oauth = emu.portal.oauth
    tokens = set(oauth.access) | set(oauth.refresh) | set(oauth.revoked)
    return [emu.webhook_code, emu.client_secret, *sorted(tokens)]


def exception_texts(error: BaseException | None) -> list[str]:
    """``str``, ``repr`` and the formatted traceback of an exception and its whole chain."""
    texts: list[str] = []
    seen: set[int] = set()
    current = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current)]
        current = current.__cause__ or current.__context__
    if error is not None:
        texts.append("".join(traceback.format_exception(error)))
    return texts


def assert_no_secrets(texts: Iterable[str], secrets: Iterable[str], where: str = "") -> None:
    """No secret occurs in any text (its value is never printed by the assertion)."""
    blob = "\n".join(texts)
    leaked = [f"secret #{n} ({len(s)} chars)" for n, s in enumerate(secrets) if s and s in blob]
    assert not leaked, f"secrets leaked {where}: {leaked}"
