"""Bitrix24GetActivitiesOperator: construction, ID handling, XCom pushes, missing-ID policies, errors.

The hook is replaced by the in-memory fake of the client's ``batch`` contract; real HTTP against the
emulator is in tests/integration/test_operator_emulator.py, real DAG runs in tests/e2e.
"""

from __future__ import annotations

import logging
import re
from decimal import Decimal
from typing import Any

import pendulum
import pytest

from airflow_provider_b24._compat import AirflowFailException
from airflow_provider_b24.exceptions import (
    Bitrix24AccessDenied,
    Bitrix24AuthError,
    Bitrix24BadRequest,
    Bitrix24ConfigError,
    Bitrix24InsufficientScope,
    Bitrix24NotFound,
    Bitrix24Overloaded,
    Bitrix24RateLimited,
    Bitrix24ServerError,
    Bitrix24TransportError,
)
from airflow_provider_b24.operators.activity import (
    XCOM_WARN_THRESHOLD,
    Bitrix24GetActivitiesOperator,
    OnMissing,
    format_ids,
)
from tests.unit.activities.fakes import FakeClient


class RecordingLog:
    """Stands in for ``self.log`` (structlog on Airflow 3 does not reach ``caplog``)."""

    def __init__(self) -> None:
        self.records: list[tuple[int, str]] = []

    def _add(self, level: int, msg: str, *args: Any) -> None:
        if "outside of the Task Runner" in msg:  # Airflow's own note about calling execute() directly
            return
        self.records.append((level, msg % args if args else msg))

    def debug(self, msg: str, *args: Any) -> None:
        self._add(logging.DEBUG, msg, *args)

    def info(self, msg: str, *args: Any) -> None:
        self._add(logging.INFO, msg, *args)

    def warning(self, msg: str, *args: Any) -> None:
        self._add(logging.WARNING, msg, *args)

    def error(self, msg: str, *args: Any) -> None:
        self._add(logging.ERROR, msg, *args)

    def text(self, min_level: int = logging.DEBUG) -> str:
        return "\n".join(msg for level, msg in self.records if level >= min_level)


@pytest.fixture
def oplog(monkeypatch: pytest.MonkeyPatch) -> RecordingLog:
    recorder = RecordingLog()
    monkeypatch.setattr(Bitrix24GetActivitiesOperator, "log", property(lambda self: recorder))
    return recorder


class FakeTI:
    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def _op(fake: Any, **kwargs: Any) -> Bitrix24GetActivitiesOperator:
    kwargs.setdefault("activity_ids", [1, 2, 3])
    op = Bitrix24GetActivitiesOperator(task_id="fetch", **kwargs)
    op.__dict__["hook"] = fake  # the cached_property's slot: no connection lookup
    return op


def _run(op: Bitrix24GetActivitiesOperator) -> tuple[list[dict[str, Any]], FakeTI]:
    ti = FakeTI()
    result = op.execute({"ti": ti})  # type: ignore[arg-type]
    return result, ti


class TestConstruction:
    def test_defaults(self) -> None:
        op = Bitrix24GetActivitiesOperator(task_id="t", activity_ids=[1])
        assert op.bitrix24_conn_id == "bitrix24_default"
        assert op.select is None
        assert op.on_missing == "fail"
        assert op.strategy == "list"
        assert op.template_fields == ("activity_ids", "bitrix24_conn_id", "select")

    def test_keyword_only(self) -> None:
        with pytest.raises(TypeError):
            Bitrix24GetActivitiesOperator([1], task_id="t")  # type: ignore[misc]

    def test_stores_arguments_unchanged_no_io(self) -> None:
        op = Bitrix24GetActivitiesOperator(
            task_id="t",
            activity_ids="{{ ti.xcom_pull('ids') }}",
            bitrix24_conn_id="{{ var.value.conn }}",
            select=["COMMUNICATIONS"],
            on_missing=OnMissing.WARN,
            strategy="get",
        )
        assert op.activity_ids == "{{ ti.xcom_pull('ids') }}"
        assert op.bitrix24_conn_id == "{{ var.value.conn }}"
        assert (op.on_missing, op.strategy) == ("warn", "get")
        assert "hook" not in op.__dict__

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"on_missing": "skip"}, "on_missing must be one of 'fail', 'warn', 'ignore'; got 'skip'"),
            ({"strategy": "batch"}, "strategy must be one of 'list', 'get'; got 'batch'"),
        ],
    )
    def test_invalid_choices_fail_at_parse_time(self, kwargs: dict[str, Any], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            Bitrix24GetActivitiesOperator(task_id="t", activity_ids=[1], **kwargs)

    def test_hook_is_created_lazily_with_the_conn_id(self) -> None:
        op = Bitrix24GetActivitiesOperator(task_id="t", activity_ids=[1], bitrix24_conn_id="b24")
        assert op.hook.bitrix24_conn_id == "b24"
        assert op.hook is op.hook


class TestExecute:
    def test_returns_parsed_activities_in_input_order(self) -> None:
        fake = FakeClient(range(1, 100))
        result, ti = _run(_op(fake, activity_ids=[30, 5, 17]))
        assert [row["ID"] for row in result] == [30, 5, 17]
        assert isinstance(result[0]["START_TIME"], pendulum.DateTime)
        assert result[0]["COMPLETED"] is False
        assert result[0]["SETTINGS"] == {}
        assert ti.pushed == {"missing_ids": []}
        assert fake.closed  # the HTTP session is not left open

    @pytest.mark.parametrize(
        "ids",
        [7, "7", "[7, 8]", "7,8", [7, "8"], ({"ID": "7"}, {"ID": 8}), [{"ID": 7, "SUBJECT": "x"}]],
    )
    def test_id_forms(self, ids: Any) -> None:
        fake = FakeClient(range(1, 10))
        result, _ = _run(_op(fake, activity_ids=ids))
        assert [row["ID"] for row in result][:1] == [7]

    def test_duplicates(self) -> None:
        fake = FakeClient(range(1, 10))
        result, _ = _run(_op(fake, activity_ids=[3, 3, 1, "3", 1]))
        assert [row["ID"] for row in result] == [3, 1]

    @pytest.mark.parametrize(
        ("ids", "fragment"),
        [
            ("abc", "invalid activity ID 'abc'"),
            ([1, None], "invalid activity ID None at position 1"),
            ([1, 2, -1], "invalid activity ID -1 at position 2"),
            ([1.5], "invalid activity ID 1.5 at position 0"),
            ([[1, 2]], "invalid activity ID [1, 2] at position 0"),
            ([True], "invalid activity ID True at position 0"),
        ],
    )
    def test_bad_ids_fail_before_any_request(self, ids: Any, fragment: str) -> None:
        fake = FakeClient(range(1, 10))
        with pytest.raises(
            AirflowFailException,
            match=r"^Checking activity_ids and select failed: " + fragment.replace("[", r"\["),
        ):
            _run(_op(fake, activity_ids=ids))
        assert fake.requests == 0

    @pytest.mark.parametrize("ids", [[], "", "[]"])
    def test_empty(self, ids: Any, oplog: RecordingLog) -> None:
        fake = FakeClient(range(1, 10))
        result, ti = _run(_op(fake, activity_ids=ids))
        assert result == []
        assert ti.pushed == {"missing_ids": []}
        assert fake.requests == 0
        assert "nothing to fetch" in oplog.text(logging.INFO)

    def test_select_is_passed(self) -> None:
        fake = FakeClient(range(1, 10))
        result, _ = _run(_op(fake, activity_ids=[2], select=["COMMUNICATIONS"]))
        assert fake.batches[0]["ids0"][1]["select"] == ["*", "COMMUNICATIONS"]
        assert result[0]["COMMUNICATIONS"][0]["ID"] == 20

    def test_bad_select_fails(self) -> None:
        with pytest.raises(AirflowFailException, match="select"):
            _run(_op(FakeClient([1]), select=[1]))

    def test_get_strategy_with_select_only_field_fails(self) -> None:
        with pytest.raises(AirflowFailException, match="strategy='list'"):
            _run(_op(FakeClient([1]), strategy="get", select=["FILES"]))

    def test_request_count_and_progress_logs(self, oplog: RecordingLog) -> None:
        fake = FakeClient(range(1, 10_001))
        result, _ = _run(_op(fake, activity_ids=list(range(1, 10_001))))
        assert len(result) == 10_000
        assert fake.requests == 4
        # Batches run in parallel, so the wait reported with the first one depends on timing.
        assert re.search(
            r"fetched 2500/10000 activities in 1 requests \([0-9.]+ s rate-limit wait\)", oplog.text()
        )
        assert "fetched 10000/10000 activities in 4 requests (2.0 s rate-limit wait)" in oplog.text()
        assert "Bitrix24ExportActivitiesOperator" not in oplog.text()

    def test_warns_about_huge_xcom(self, oplog: RecordingLog) -> None:
        n = XCOM_WARN_THRESHOLD + 1
        fake = FakeClient(range(1, n + 1))
        result, _ = _run(_op(fake, activity_ids=range(1, n + 1)))
        assert len(result) == n
        assert "Bitrix24ExportActivitiesOperator" in oplog.text()


class TestMissing:
    def test_fail_lists_first_20_and_count(self) -> None:
        fake = FakeClient(range(1, 11))
        ids = list(range(1, 41))  # 30 missing: 11..40
        with pytest.raises(AirflowFailException) as info:
            _run(_op(fake, activity_ids=ids))
        text = str(info.value)
        assert "30 of 40 activities were not returned" in text
        assert ", ".join(str(i) for i in range(11, 31)) + ", ... and 10 more" in text
        assert "not visible" in text

    def test_fail_pushes_missing_ids_first(self) -> None:
        fake = FakeClient(range(1, 3))
        op = _op(fake, activity_ids=[1, 9, 2, 8])
        ti = FakeTI()
        with pytest.raises(AirflowFailException):
            op.execute({"ti": ti})  # type: ignore[arg-type]
        assert ti.pushed == {"missing_ids": [9, 8]}

    def test_warn(self, oplog: RecordingLog) -> None:
        fake = FakeClient(range(1, 3))
        result, ti = _run(_op(fake, activity_ids=[1, 9, 2], on_missing="warn"))
        assert [r["ID"] for r in result] == [1, 2]
        assert ti.pushed == {"missing_ids": [9]}
        assert "1 of 3 activities were not returned" in oplog.text()
        assert oplog.records[-1][0] == logging.WARNING

    def test_ignore_is_silent(self, oplog: RecordingLog) -> None:
        fake = FakeClient(range(1, 3))
        result, ti = _run(_op(fake, activity_ids=[1, 9, 2], on_missing="ignore"))
        assert [r["ID"] for r in result] == [1, 2]
        assert ti.pushed == {"missing_ids": [9]}
        assert not oplog.text(logging.WARNING)

    def test_get_strategy_names_the_reason_per_id(self) -> None:
        fake = FakeClient(range(1, 5), hidden={3})
        with pytest.raises(AirflowFailException) as info:
            _run(_op(fake, activity_ids=[1, 3, 99], strategy="get"))
        assert "3 (Bitrix24AccessDenied), 99 (Bitrix24NotFound)" in str(info.value)
        assert fake.requests == 1


class TestErrors:
    @pytest.mark.parametrize(
        "error",
        [
            Bitrix24AuthError("Invalid request credentials", code="INVALID_CREDENTIALS", http_status=401),
            Bitrix24InsufficientScope("needs crm", code="insufficient_scope", http_status=401),
            Bitrix24AccessDenied("Access denied.", http_status=400),
            Bitrix24NotFound("Not found", http_status=400),
            Bitrix24BadRequest("Https required", code="INVALID_REQUEST", http_status=400),
            Bitrix24ConfigError("connection: host is missing"),
            Bitrix24Overloaded("REST API is blocked due to overload", code="OVERLOAD_LIMIT", http_status=503),
        ],
    )
    def test_permanent_errors_fail_without_retries(self, error: Exception) -> None:
        class Failing(FakeClient):
            def batch(self, commands: Any, *, halt: bool = False) -> Any:
                raise error

        with pytest.raises(AirflowFailException, match="not retrying") as info:
            _run(_op(Failing([1])))
        assert info.value.__cause__ is error

    @pytest.mark.parametrize(
        "error",
        [
            Bitrix24RateLimited("Too many requests", code="QUERY_LIMIT_EXCEEDED", http_status=503),
            Bitrix24ServerError("Internal server error", http_status=500),
            Bitrix24TransportError("connection reset", retryable=True),
            Bitrix24NotFound("flaky", retryable=True),
        ],
    )
    def test_transient_errors_propagate(self, error: Exception) -> None:
        class Failing(FakeClient):
            def batch(self, commands: Any, *, halt: bool = False) -> Any:
                raise error

        with pytest.raises(type(error)) as info:
            _run(_op(Failing([1])))
        assert info.value is error

    def test_malformed_activity_fails(self) -> None:
        fake = FakeClient(range(1, 3))
        fake.rows[2]["START_TIME"] = "tomorrow"
        with pytest.raises(
            AirflowFailException, match="activity 2: field START_TIME: cannot parse 'tomorrow'"
        ):
            _run(_op(fake, activity_ids=[1, 2]))


def test_format_ids() -> None:
    assert format_ids([1, 2, 3]) == "1, 2, 3"
    assert format_ids(list(range(25)), limit=20).endswith("19, ... and 5 more")


def test_result_types_survive_xcom() -> None:
    import json

    from airflow_provider_b24._compat import serde_deserialize, serde_serialize

    fake = FakeClient(range(1, 5))
    fake.rows[1]["RESULT_SUM"] = "12.30"
    result, _ = _run(_op(fake, activity_ids=[1, 2]))
    back = serde_deserialize(json.loads(json.dumps(serde_serialize(result))))
    assert back == result
    assert back[0]["RESULT_SUM"] == Decimal("12.30")
