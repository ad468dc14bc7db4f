"""One failure policy: the same (error -> outcome) table for the operator, the sensor and the trigger.

The rule is :func:`airflow_provider_b24.exceptions.error_outcome`; each adapter applies it through
:mod:`airflow_provider_b24.failures`. A TLS failure (not retryable) once went to Airflow retries under
the operators but failed the sensor at once; now every adapter gives every error the same outcome.
"""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk import PokeReturnValue

from airflow_provider_b24._compat import AirflowException, AirflowFailException
from airflow_provider_b24.activities import ActivityParseError, InvalidActivityIds, InvalidSelect
from airflow_provider_b24.exceptions import (
    Bitrix24AccessDenied,
    Bitrix24ArgumentError,
    Bitrix24AuthError,
    Bitrix24BadRequest,
    Bitrix24ConfigError,
    Bitrix24Error,
    Bitrix24InsufficientScope,
    Bitrix24NotFound,
    Bitrix24OperationTimeLimit,
    Bitrix24Overloaded,
    Bitrix24PortalDeleted,
    Bitrix24RateLimited,
    Bitrix24ServerError,
    Bitrix24TokenExpired,
    Bitrix24TransportError,
    ErrorOutcome,
    error_outcome,
    is_permanent,
    seconds_until_retry,
)
from airflow_provider_b24.export import ExportArgumentError, ExportCancelled
from airflow_provider_b24.failures import raise_for_error_event
from airflow_provider_b24.operators.activity import Bitrix24GetActivitiesOperator
from airflow_provider_b24.sensors.activity import Bitrix24ActivitySensor
from airflow_provider_b24.triggers.activity import Bitrix24ActivityTrigger
from tests.unit.activities.fakes import FakeClient

FAIL, RETRY, UNEXPECTED = ErrorOutcome.FAIL, ErrorOutcome.RETRY, ErrorOutcome.UNEXPECTED

#: (error, the outcome every adapter must give it)
TABLE: list[tuple[BaseException, ErrorOutcome]] = [
    (Bitrix24AuthError("Invalid token", code="INVALID_CREDENTIALS", http_status=401), FAIL),
    (Bitrix24TokenExpired("The access token provided has expired", code="expired_token"), FAIL),
    (Bitrix24InsufficientScope("crm scope", code="insufficient_scope", http_status=401), FAIL),
    (Bitrix24AccessDenied("Access denied.", http_status=400), FAIL),
    (Bitrix24NotFound("Not found", http_status=400), FAIL),
    (Bitrix24BadRequest("Invalid filter", http_status=400), FAIL),
    (Bitrix24ConfigError("host is required"), FAIL),
    # argument errors (one base) and an unreadable answer: the same call fails the same way again
    (Bitrix24ArgumentError("concurrency must be a positive integer, got 0"), FAIL),
    (InvalidActivityIds("abc", 0, "expected a positive integer"), FAIL),
    (InvalidSelect("select: 1 at position 0 is not a field name"), FAIL),
    (ExportArgumentError("updated_from has no UTC offset"), FAIL),
    (ActivityParseError("DEADLINE", "soon", "datetime"), FAIL),
    (Bitrix24Overloaded("blocked", code="OVERLOAD_LIMIT", http_status=503), FAIL),
    (Bitrix24PortalDeleted("gone", code="PORTAL_DELETED", http_status=404), FAIL),
    (Bitrix24TransportError("TLS handshake failed", code="TLS_ERROR", retryable=False), FAIL),
    (Bitrix24ServerError("boom", http_status=500), RETRY),
    (Bitrix24RateLimited("too many", code="QUERY_LIMIT_EXCEEDED", http_status=503), RETRY),
    (Bitrix24OperationTimeLimit("slow down", code="OPERATION_TIME_LIMIT", reset_at=None), RETRY),
    (Bitrix24TransportError("could not connect", code="CONNECT_ERROR", retryable=True), RETRY),
    (Bitrix24TransportError("no answer", code="READ_TIMEOUT", retryable=True), RETRY),
    (RuntimeError("a bug"), UNEXPECTED),
    (ExportCancelled("export cancelled after 10 rows"), UNEXPECTED),  # a kill: no policy applies
    (KeyError("conn"), UNEXPECTED),
]
IDS = [pytest.param(error, outcome, id=f"{type(error).__name__}-{outcome}") for error, outcome in TABLE]


class RaisingOnce(FakeClient):
    """A fake hook whose first request raises ``error``; later ones serve completed activities."""

    def __init__(self, error: BaseException) -> None:
        super().__init__([1, 2])
        for row in self.rows.values():
            row["COMPLETED"] = "Y"
        self.error: BaseException | None = error

    def batch(self, *args: Any, **kwargs: Any) -> Any:
        error, self.error = self.error, None
        if error is not None:
            self.requests += 1
            raise error
        return super().batch(*args, **kwargs)

    def get_settings(self) -> Any:
        """What a trigger reads when it opens the hook (rate limit 0: unknown)."""
        return SimpleNamespace(config=SimpleNamespace(rate_limit=0.0), secrets=[])


class FakeTI:
    def xcom_push(self, key: str, value: Any) -> None:
        pass


@pytest.mark.parametrize(("error", "outcome"), IDS)
def test_predicate(error: BaseException, outcome: ErrorOutcome) -> None:
    assert error_outcome(error) is outcome
    assert is_permanent(error) is (outcome is FAIL)


@pytest.mark.parametrize(("error", "outcome"), IDS)
def test_operator(error: BaseException, outcome: ErrorOutcome) -> None:
    op = Bitrix24GetActivitiesOperator(task_id="fetch", activity_ids=[1, 2])
    op.__dict__["hook"] = RaisingOnce(error)
    expected: type[BaseException] = AirflowFailException if outcome is FAIL else type(error)
    with pytest.raises(expected) as raised:
        op.execute({"ti": FakeTI()})  # type: ignore[arg-type]
    if outcome is FAIL:
        assert raised.value.__cause__ is error
    else:  # raised unchanged: Airflow's retries apply
        assert raised.value is error


@pytest.mark.parametrize(("error", "outcome"), IDS)
def test_sensor(error: BaseException, outcome: ErrorOutcome) -> None:
    sensor = Bitrix24ActivitySensor(task_id="wait", activity_ids=[1, 2], poke_interval=5)
    hook = RaisingOnce(error)
    sensor.__dict__["hook"] = hook
    if outcome is FAIL:
        with pytest.raises(AirflowFailException):
            sensor.poke({})  # type: ignore[arg-type]
    elif outcome is UNEXPECTED:
        with pytest.raises(type(error)):
            sensor.poke({})  # type: ignore[arg-type]
    else:  # not done yet; the next poke asks again and succeeds
        first = sensor.poke({})  # type: ignore[arg-type]
        assert isinstance(first, PokeReturnValue) and not first.is_done
        sensor._not_before = None  # a 429 without reset_at waits one poke interval
        assert sensor.poke({}).is_done  # type: ignore[arg-type]


@pytest.mark.parametrize(("error", "outcome"), IDS)
def test_trigger(error: BaseException, outcome: ErrorOutcome, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = RaisingOnce(error)
    monkeypatch.setenv(
        "AIRFLOW_CONN_BITRIX24_DEFAULT", json.dumps({"conn_type": "bitrix24", "host": "b24.example"})
    )
    monkeypatch.setattr("airflow_provider_b24.hooks.bitrix24.Bitrix24Hook", lambda **_: hook)
    trigger = Bitrix24ActivityTrigger(activity_ids=[1, 2], poll_interval=0.01, first_poll_delay=0)

    async def events() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    (payload,) = asyncio.run(asyncio.wait_for(events(), timeout=10))
    if outcome is RETRY:
        assert payload["status"] == "success" and hook.requests == 2
        return
    assert payload == {"status": "error", "message": f"{type(error).__name__}: {error}", "outcome": outcome}
    # ... and the sensor resumes from it with the same outcome as a poke would have had.
    expected = AirflowFailException if outcome is FAIL else AirflowException
    with pytest.raises(expected) as raised:
        raise_for_error_event("wait", payload)
    assert type(raised.value) is expected


def test_error_events_of_provider_0_1_0_still_fail_the_task() -> None:
    with pytest.raises(AirflowFailException, match="Bitrix24AuthError"):
        raise_for_error_event("wait", {"status": "error", "message": "Bitrix24AuthError: bad"})


def test_seconds_until_retry_waits_for_the_operating_reset() -> None:
    now = time.time()
    limited = Bitrix24OperationTimeLimit("slow", code="OPERATION_TIME_LIMIT", reset_at=now + 30)
    assert seconds_until_retry(limited, 5, now=now) == pytest.approx(31.0)
    assert seconds_until_retry(Bitrix24ServerError("x"), 5, now=now) == 5.0
    assert isinstance(limited, Bitrix24Error)


def test_old_export_operator_path_is_deprecated_but_works() -> None:
    from airflow_provider_b24.operators import activity, export

    with pytest.warns(DeprecationWarning, match=r"operators\.export"):
        old = activity.Bitrix24ExportActivitiesOperator  # type: ignore[attr-defined]
    assert old is export.Bitrix24ExportActivitiesOperator


def test_argument_errors_share_one_base_and_stay_value_errors() -> None:
    for cls in (InvalidActivityIds, InvalidSelect, ExportArgumentError):
        assert issubclass(cls, Bitrix24ArgumentError)
    assert issubclass(Bitrix24ArgumentError, Bitrix24ConfigError)
    assert issubclass(Bitrix24ArgumentError, ValueError)
    assert issubclass(ActivityParseError, Bitrix24Error) and issubclass(ActivityParseError, ValueError)
    assert not issubclass(ExportCancelled, Bitrix24Error)
    # the message is the argument error's own text (no class-name prefix)
    assert str(InvalidActivityIds("abc", 2, "bad")) == "invalid activity ID 'abc' at position 2: bad"
