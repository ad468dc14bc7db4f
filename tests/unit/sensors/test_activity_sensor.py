"""Bitrix24ActivitySensor: poke decisions, error policy, deferral and timeouts, against a fake portal.

The fake implements the client's ``batch`` contract (docs/architecture.md) for ``crm.activity.list``
with an ``@ID`` filter and counts HTTP requests. Real HTTP against the emulator is covered in
tests/integration/test_sensor_emulator.py; real DAG runs in tests/e2e/test_sensor_dag.py.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pendulum
import pytest
from airflow.sdk import PokeReturnValue

from airflow_provider_b24._compat import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)
from airflow_provider_b24.exceptions import (
    Bitrix24AccessDenied,
    Bitrix24AuthError,
    Bitrix24Error,
    Bitrix24OperationTimeLimit,
    Bitrix24ServerError,
)
from airflow_provider_b24.sensors import activity as sensor_module
from airflow_provider_b24.sensors.activity import Bitrix24ActivitySensor
from airflow_provider_b24.triggers.activity import Bitrix24ActivityTrigger

try:
    from airflow.sdk.exceptions import AirflowRescheduleException
except ImportError:  # Airflow 3.1
    from airflow.exceptions import AirflowRescheduleException  # type: ignore[no-redef]


@dataclass
class FakeBatchResult:
    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, Exception] = field(default_factory=dict)
    requests: int = 1


def _row(activity_id: int, completed: bool = False) -> dict[str, Any]:
    return {
        "ID": str(activity_id),
        "SUBJECT": f"Call {activity_id}",
        "COMPLETED": "Y" if completed else "N",
        "START_TIME": "2024-04-09T10:00:00+03:00",
        "SETTINGS": [],
    }


class FakePortal:
    """``batch`` for ``crm.activity.list`` (``@ID`` filter); one call = one HTTP request (≤50 commands)."""

    def __init__(self, rows: Mapping[int, dict[str, Any]] | None = None) -> None:
        self.rows: dict[int, dict[str, Any]] = dict(rows or {})
        self.requests = 0
        self.raise_next: list[Exception] = []
        self.selects: list[Any] = []

    def add(self, activity_id: int, completed: bool = False) -> None:
        self.rows[activity_id] = _row(activity_id, completed)

    def complete(self, activity_id: int) -> None:
        self.rows[activity_id]["COMPLETED"] = "Y"

    def batch(self, commands: Mapping[str, tuple[str, Mapping[str, Any]]], *, halt: bool = False) -> Any:
        assert len(commands) <= 50
        self.requests += 1
        if self.raise_next:
            raise self.raise_next.pop(0)
        results: dict[str, Any] = {}
        for key, (method, params) in commands.items():
            assert method == "crm.activity.list"
            self.selects.append(params["select"])
            wanted = params["filter"]["@ID"]
            # the portal answers in its own order (here: descending ID)
            results[key] = [dict(self.rows[i]) for i in sorted(wanted, reverse=True) if i in self.rows]
        return FakeBatchResult(results=results)


def make_sensor(portal: FakePortal, **kwargs: Any) -> Bitrix24ActivitySensor:
    kwargs.setdefault("task_id", "wait")
    kwargs.setdefault("poke_interval", 5)
    sensor = Bitrix24ActivitySensor(**kwargs)
    sensor.hook = portal  # type: ignore[assignment]  # cached_property: an instance attribute wins
    return sensor


class FakeTI:
    """The bits of a RuntimeTaskInstance the base sensor uses in reschedule mode."""

    def __init__(self, first_reschedule_date: datetime | None = None) -> None:
        self.first = first_reschedule_date

    def get_first_reschedule_date(self, context: Any) -> datetime | None:
        return self.first


def logged(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> str:
    """Task logs go through structlog (stdout) in Airflow 3, or stdlib logging: read both."""
    captured = capsys.readouterr()
    return caplog.text + captured.out + captured.err


# -- construction ---------------------------------------------------------------------------------


def test_template_fields_and_defaults() -> None:
    sensor = Bitrix24ActivitySensor(task_id="wait", activity_ids=[1])
    assert sensor.template_fields == ("activity_ids", "bitrix24_conn_id", "select")
    assert sensor.bitrix24_conn_id == "bitrix24_default"
    assert sensor.until == "completed"
    assert sensor.select is None
    assert sensor.deferrable is False
    assert sensor.mode == "poke"


def test_until_is_validated_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match=r"until must be one of 'completed', 'exists', got 'done'"):
        Bitrix24ActivitySensor(task_id="wait", activity_ids=[1], until="done")


def test_default_deferrable_comes_from_config() -> None:
    # The default is read when the module is imported (the Airflow pattern); check the wiring.
    import inspect

    default = inspect.signature(Bitrix24ActivitySensor.__init__).parameters["deferrable"].default
    assert default is False  # [operators] default_deferrable defaults to false


def test_no_io_in_init(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_BITRIX24_DEFAULT", raising=False)
    sensor = Bitrix24ActivitySensor(task_id="wait", activity_ids="{{ ti.xcom_pull('x') }}")
    assert "hook" not in sensor.__dict__


# -- poke -----------------------------------------------------------------------------------------


def test_poke_none_some_all_completed_keeps_input_order() -> None:
    portal = FakePortal({i: _row(i) for i in (3, 1, 2)})
    sensor = make_sensor(portal, activity_ids=[3, 1, 2])

    result = sensor.poke({})
    assert result.is_done is False and result.xcom_value is None
    portal.complete(1)
    assert sensor.poke({}).is_done is False
    portal.complete(3)
    portal.complete(2)
    result = sensor.poke({})
    assert result.is_done is True
    assert [a["ID"] for a in result.xcom_value] == [3, 1, 2]  # parsed (int IDs), input order
    assert all(a["COMPLETED"] is True for a in result.xcom_value)
    assert portal.requests == 3  # one request per poke


def test_poke_logs_missing_and_pending_ids(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    portal = FakePortal({1: _row(1, completed=True), 2: _row(2)})
    sensor = make_sensor(portal, activity_ids=[1, 2, 3])
    with caplog.at_level("INFO"):
        assert sensor.poke({}).is_done is False
    text = logged(caplog, capsys)
    assert "1/3 activities ready" in text
    assert "1 not found yet [3]" in text
    assert "1 not completed yet [2]" in text


def test_missing_ids_keep_waiting_until_created() -> None:
    portal = FakePortal()
    sensor = make_sensor(portal, activity_ids=[7], until="exists")
    assert sensor.poke({}).is_done is False
    portal.add(7, completed=False)
    result = sensor.poke({})
    assert result.is_done is True
    assert result.xcom_value[0]["ID"] == 7 and result.xcom_value[0]["COMPLETED"] is False


def test_until_completed_needs_existence_too() -> None:
    portal = FakePortal({1: _row(1, completed=True)})
    sensor = make_sensor(portal, activity_ids=[1, 2])
    assert sensor.poke({}).is_done is False


def test_one_request_per_poke_up_to_2500_ids_then_ceil() -> None:
    portal = FakePortal({i: _row(i, completed=True) for i in range(1, 2502)})
    assert make_sensor(portal, activity_ids=list(range(1, 2501))).poke({}).is_done is True
    assert portal.requests == 1
    portal.requests = 0
    assert make_sensor(portal, activity_ids=list(range(1, 2502))).poke({}).is_done is True
    assert portal.requests == 2


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("abc", "'abc'"), ([1, None], "None at position 1"), ([1, -1], "-1 at position 1")],
)
def test_bad_ids_fail_before_any_request(value: Any, fragment: str) -> None:
    portal = FakePortal()
    sensor = make_sensor(portal, activity_ids=value)
    with pytest.raises(AirflowFailException, match="invalid activity ID") as info:
        sensor.poke({})
    assert fragment in str(info.value)
    assert portal.requests == 0


def test_empty_ids_are_done_at_once() -> None:
    portal = FakePortal()
    result = make_sensor(portal, activity_ids=[]).poke({})
    assert result.is_done is True and result.xcom_value == []
    assert portal.requests == 0


def test_ids_from_jinja_string_and_upstream_rows() -> None:
    portal = FakePortal({1: _row(1, True), 2: _row(2, True)})
    assert make_sensor(portal, activity_ids="[2, 1]").poke({}).xcom_value[0]["ID"] == 2
    assert make_sensor(portal, activity_ids=[{"ID": "1"}, {"ID": 2}]).poke({}).is_done is True


def test_explicit_select_always_reads_completed() -> None:
    portal = FakePortal({1: _row(1, True)})
    result = make_sensor(portal, activity_ids=[1], select=["SUBJECT"]).poke({})
    assert result.is_done is True
    assert portal.selects[-1] == ["ID", "SUBJECT", "COMPLETED"]
    # until="exists" leaves the user's select alone
    make_sensor(portal, activity_ids=[1], select=["SUBJECT"], until="exists").poke({})
    assert portal.selects[-1] == ["ID", "SUBJECT"]


def test_bad_select_fails() -> None:
    with pytest.raises(AirflowFailException, match="select"):
        make_sensor(FakePortal(), activity_ids=[1], select=[1]).poke({})


# -- error policy -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        Bitrix24AuthError("Invalid token", code="INVALID_CREDENTIALS", http_status=401),
        Bitrix24AccessDenied("Access denied", code="ACCESS_DENIED", http_status=403),
        Bitrix24Error("Bad request", code="INVALID_REQUEST", http_status=400),
    ],
)
def test_auth_and_access_errors_fail_without_retries(error: Exception) -> None:
    portal = FakePortal()
    portal.raise_next.append(error)
    sensor = make_sensor(portal, activity_ids=[1], retries=3)
    with pytest.raises(AirflowFailException, match=type(error).__name__):
        sensor.poke({})
    assert portal.requests == 1


def test_auth_error_fails_the_whole_sensor_run_immediately() -> None:
    portal = FakePortal()
    portal.raise_next.append(Bitrix24AuthError("Invalid token", code="INVALID_CREDENTIALS"))
    with pytest.raises(AirflowFailException):
        make_sensor(portal, activity_ids=[1], poke_interval=0).execute({})
    assert portal.requests == 1


def test_auth_error_with_soft_fail_skips() -> None:
    portal = FakePortal()
    portal.raise_next.append(Bitrix24AuthError("Invalid token", code="INVALID_CREDENTIALS"))
    with pytest.raises(AirflowSkipException):
        make_sensor(portal, activity_ids=[1], soft_fail=True).execute({})


def test_transient_error_keeps_waiting(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    portal = FakePortal({1: _row(1, True)})
    portal.raise_next.append(Bitrix24ServerError("boom", code="INTERNAL_SERVER_ERROR", http_status=500))
    sensor = make_sensor(portal, activity_ids=[1])
    with caplog.at_level("WARNING"):
        assert sensor.poke({}).is_done is False
    assert "will poke again" in logged(caplog, capsys)
    assert sensor.poke({}).is_done is True


def test_operation_time_limit_skips_pokes_until_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_000_000.0]
    monkeypatch.setattr(sensor_module, "_now", lambda: clock[0])
    portal = FakePortal({1: _row(1, True)})
    portal.raise_next.append(
        Bitrix24OperationTimeLimit(
            "blocked", code="OPERATION_TIME_LIMIT", http_status=429, reset_at=1_000_120.0
        )
    )
    sensor = make_sensor(portal, activity_ids=[1], poke_interval=30)
    assert sensor.poke({}).is_done is False
    assert portal.requests == 1
    for t in (1_000_030.0, 1_000_060.0, 1_000_119.0):
        clock[0] = t
        assert sensor.poke({}).is_done is False
    assert portal.requests == 1  # no request before the reset time
    clock[0] = 1_000_121.0
    assert sensor.poke({}).is_done is True
    assert portal.requests == 2


def test_operation_time_limit_in_reschedule_mode_reschedules_to_the_reset_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sensor_module, "_now", lambda: 1_000_000.0)
    portal = FakePortal({1: _row(1, True)})
    portal.raise_next.append(Bitrix24OperationTimeLimit("blocked", http_status=429, reset_at=1_000_300.0))
    sensor = make_sensor(portal, activity_ids=[1], poke_interval=60, mode="reschedule")
    with pytest.raises(AirflowRescheduleException) as info:
        sensor.execute({"ti": FakeTI()})
    assert info.value.reschedule_date == datetime.fromtimestamp(1_000_300.0, tz=UTC)


def test_operation_time_limit_soon_in_reschedule_mode_uses_poke_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sensor_module, "_now", lambda: 1_000_000.0)
    portal = FakePortal({1: _row(1, True)})
    portal.raise_next.append(Bitrix24OperationTimeLimit("blocked", http_status=429, reset_at=1_000_010.0))
    sensor = make_sensor(portal, activity_ids=[1], poke_interval=60, mode="reschedule")
    before = pendulum.now("UTC")
    with pytest.raises(AirflowRescheduleException) as info:
        sensor.execute({"ti": FakeTI()})
    assert info.value.reschedule_date >= before + timedelta(seconds=59)


# -- poke and reschedule modes through BaseSensorOperator.execute ----------------------------------


def test_poke_mode_returns_parsed_activities_as_xcom() -> None:
    portal = FakePortal({5: _row(5, True)})
    value = make_sensor(portal, activity_ids=5, poke_interval=0).execute({})
    assert value[0]["ID"] == 5 and value[0]["SUBJECT"] == "Call 5"
    assert value[0]["START_TIME"] == pendulum.parse("2024-04-09T10:00:00+03:00")


def test_reschedule_mode_reschedules_then_succeeds() -> None:
    portal = FakePortal({5: _row(5)})
    sensor = make_sensor(portal, activity_ids=[5], mode="reschedule", poke_interval=60)
    with pytest.raises(AirflowRescheduleException):
        sensor.execute({"ti": FakeTI()})
    portal.complete(5)
    fresh = make_sensor(portal, activity_ids=[5], mode="reschedule", poke_interval=60)
    assert fresh.execute({"ti": FakeTI(pendulum.now("UTC"))})[0]["ID"] == 5


def test_poke_mode_timeout_and_soft_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = itertools.count(0, 40)  # a fake monotonic clock for the base sensor only: 40 s per read
    fake_time = SimpleNamespace(monotonic=lambda: float(next(ticks)), sleep=lambda _s: None)
    monkeypatch.setattr("airflow.sdk.bases.sensor.time", fake_time)
    portal = FakePortal({1: _row(1)})
    with pytest.raises(AirflowSensorTimeout):
        make_sensor(portal, activity_ids=[1], timeout=100).execute({})
    with pytest.raises(AirflowSkipException):
        make_sensor(portal, activity_ids=[1], timeout=100, soft_fail=True).execute({})


# -- deferrable -----------------------------------------------------------------------------------


def test_deferrable_done_at_first_poke_does_not_defer() -> None:
    portal = FakePortal({1: _row(1, True)})
    value = make_sensor(portal, activity_ids=[1], deferrable=True).execute({})
    assert value[0]["ID"] == 1
    assert portal.requests == 1


def test_deferrable_defers_with_plain_trigger_and_sensor_timeout() -> None:
    portal = FakePortal({1: _row(1)})
    sensor = make_sensor(
        portal,
        activity_ids="[1, 2, 1]",
        deferrable=True,
        poke_interval=15,
        timeout=3600,
        bitrix24_conn_id="b24_prod",
        select=["subject"],
    )
    with pytest.raises(TaskDeferred) as info:
        sensor.execute({})
    deferred = info.value
    assert deferred.method_name == "execute_complete"
    assert deferred.timeout == timedelta(seconds=3600)
    trigger = deferred.trigger
    assert isinstance(trigger, Bitrix24ActivityTrigger)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_b24.triggers.activity.Bitrix24ActivityTrigger"
    assert kwargs == {
        "activity_ids": [1, 2],
        "bitrix24_conn_id": "b24_prod",
        "until": "completed",
        "poll_interval": 15.0,
        "select": ["ID", "SUBJECT", "COMPLETED"],
        "first_poll_delay": None,
    }
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert portal.requests == 1


def test_deferrable_bad_ids_fail_or_skip() -> None:
    with pytest.raises(AirflowFailException):
        make_sensor(FakePortal(), activity_ids="abc", deferrable=True).execute({})
    with pytest.raises(AirflowSkipException):
        make_sensor(FakePortal(), activity_ids="abc", deferrable=True, soft_fail=True).execute({})


def test_execute_complete_success_parses_in_order() -> None:
    sensor = make_sensor(FakePortal(), activity_ids=[2, 1], deferrable=True)
    event = {"status": "success", "activities": [_row(2, True), _row(1, True)]}
    value = sensor.execute_complete({}, event)
    assert [a["ID"] for a in value] == [2, 1]
    assert value[0]["COMPLETED"] is True
    assert value[0]["SETTINGS"] == {}


@pytest.mark.parametrize(
    ("event", "match"),
    [
        ({"status": "error", "message": "Bitrix24AuthError: Invalid token"}, "Invalid token"),
        (None, "unexpected trigger event"),
        ({"nope": 1}, "unexpected trigger event"),
    ],
)
def test_execute_complete_error_fails(event: Any, match: str) -> None:
    sensor = make_sensor(FakePortal(), activity_ids=[1], deferrable=True)
    with pytest.raises(AirflowFailException, match=match):
        sensor.execute_complete({}, event)


def test_execute_complete_error_with_soft_fail_skips() -> None:
    sensor = make_sensor(FakePortal(), activity_ids=[1], deferrable=True, soft_fail=True)
    with pytest.raises(AirflowSkipException):
        sensor.resume_execution("execute_complete", {"event": {"status": "error", "message": "x"}}, {})


def _trigger_timeout_kwargs() -> dict[str, Any]:
    from airflow.sdk.bases.operator import TriggerFailureReason

    return {"error": TriggerFailureReason.TRIGGER_TIMEOUT}


def test_deferral_timeout_raises_sensor_timeout_or_skips() -> None:
    from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR

    sensor = make_sensor(FakePortal(), activity_ids=[1], deferrable=True)
    with pytest.raises(AirflowSensorTimeout):
        sensor.resume_execution(TRIGGER_FAIL_REPR, _trigger_timeout_kwargs(), {})
    soft = make_sensor(FakePortal(), activity_ids=[1], deferrable=True, soft_fail=True)
    with pytest.raises(AirflowSkipException):
        soft.resume_execution(TRIGGER_FAIL_REPR, _trigger_timeout_kwargs(), {})


def test_poke_return_value_type() -> None:
    portal = FakePortal({1: _row(1, True)})
    assert isinstance(make_sensor(portal, activity_ids=[1]).poke({}), PokeReturnValue)


def test_deferrable_passes_first_poll_delay_to_the_trigger() -> None:
    portal = FakePortal()
    sensor = make_sensor(portal, activity_ids=[1], deferrable=True, first_poll_delay=4.5)
    with pytest.raises(TaskDeferred) as info:
        sensor.execute({})
    assert info.value.trigger.serialize()[1]["first_poll_delay"] == 4.5


def test_deferrable_sensor_defaults_to_one_retry() -> None:
    """A retry recovers a try failed by Airflow's deferral race (docs/sensor.md); explicit values win."""
    assert make_sensor(FakePortal(), activity_ids=[1], deferrable=True).retries == 1
    assert make_sensor(FakePortal(), activity_ids=[1], deferrable=True, retries=0).retries == 0
    assert make_sensor(FakePortal(), activity_ids=[1], deferrable=True, retries=3).retries == 3
    assert make_sensor(FakePortal(), activity_ids=[1], deferrable=False).retries == 0
    with_defaults = make_sensor(FakePortal(), activity_ids=[1], deferrable=True, default_args={"retries": 0})
    assert with_defaults.retries == 0


def test_dag_default_args_retries_win_over_the_deferrable_default() -> None:
    from airflow.sdk import DAG

    with DAG("d", schedule=None, start_date=pendulum.datetime(2024, 1, 1), default_args={"retries": 0}):
        assert make_sensor(FakePortal(), activity_ids=[1], deferrable=True).retries == 0
    with DAG("e", schedule=None, start_date=pendulum.datetime(2024, 1, 1)):
        assert make_sensor(FakePortal(), activity_ids=[1], deferrable=True).retries == 1


def test_an_unreadable_activity_fails_without_retries_like_the_operator() -> None:
    """``ActivityParseError`` is permanent (the same row parses the same way): no Airflow retries."""
    portal = FakePortal()
    portal.add(1, completed=True)
    portal.rows[1]["START_TIME"] = "tomorrow"
    sensor = make_sensor(portal, activity_ids=[1])
    with pytest.raises(AirflowFailException, match="field START_TIME: cannot parse 'tomorrow'") as info:
        sensor.poke({})
    assert "ActivityParseError; not retrying" in str(info.value)
    event = {"status": "success", "activities": [portal.rows[1]]}
    with pytest.raises(AirflowFailException, match="ActivityParseError"):
        sensor.execute_complete({}, event)
