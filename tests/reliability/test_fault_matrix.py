"""The fault-injection matrix (issue 10): every fault of ``matrix.CASES`` by every workload.

Each cell injects one scripted emulator fault *mid-run* (on the second REST request; on the write
itself for the ``write`` workload) and asserts the outcome written in ``matrix.py``: exact data
compared with the emulator's store, or a named exception with a useful message - and then, that no
credential appears in the exception texts, the captured logs, the returned data or the export file.
Request counts are what the emulator served, so retry storms and duplicate writes are visible.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import airflow_provider_b24.exceptions as b24_exceptions
from airflow_provider_b24._compat import AirflowFailException
from airflow_provider_b24.activities import fetch_activities, parse_activity
from airflow_provider_b24.client import DEFAULT_REGISTRY, Bitrix24Client, ClientConfig, WebhookAuth
from airflow_provider_b24.client import errors as client_errors
from airflow_provider_b24.client import limiter as client_limiter
from airflow_provider_b24.export import read_jsonl
from airflow_provider_b24.hooks.bitrix24 import Bitrix24Hook
from airflow_provider_b24.operators.activity import Bitrix24GetActivitiesOperator
from airflow_provider_b24.operators.export import Bitrix24ExportActivitiesOperator
from airflow_provider_b24.sensors import activity as sensor_module
from airflow_provider_b24.sensors.activity import Bitrix24ActivitySensor
from airflow_provider_b24.testing import Bitrix24Emulator
from airflow_provider_b24.testing.fields import DEFAULT_KEYS
from airflow_provider_b24.triggers import shared_poller
from airflow_provider_b24.triggers.activity import Bitrix24ActivityTrigger
from tests.reliability.conftest import (
    TOKEN_VAR_ENV,
    Armed,
    assert_no_secrets,
    emulator_secrets,
    exception_texts,
    use_connection,
)
from tests.reliability.matrix import CASE_BY_ID, Case, Expect, Outcome, cells, table

N_EXPORT = 10_000
FETCH_IDS = list(range(N_EXPORT, 0, -2))  # 5,000 IDs, descending: the output must keep this order
SENSOR_IDS = list(range(1, 11))
WINDOW = {"updated_from": "2024-01-01T00:00:00+00:00", "updated_to": "2025-01-01T00:00:00+00:00"}
NEW_ACTIVITY = {
    "SUBJECT": "reliability write",
    "TYPE_ID": 6,
    "RESPONSIBLE_ID": 1,
    "OWNER_TYPE_ID": 2,
    "OWNER_ID": 7,
}

Arm = Callable[[Bitrix24Emulator, int, Callable[[], None]], Armed]


def wire_subset(row: dict[str, Any]) -> dict[str, Any]:
    """What ``select: ["*"]`` returns of a stored row (the 39 keys of the documented get example)."""
    return {key: row[key] for key in DEFAULT_KEYS}


def expected_activities(emu: Bitrix24Emulator, ids: list[int]) -> list[dict[str, Any]]:
    return [parse_activity(wire_subset(emu.store.get(i))) for i in ids]


class TI:
    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


# --------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def big_emu() -> Iterator[Bitrix24Emulator]:
    """10,000 activities (IDs 1..10000), shared by the fetch and export cells (read-only workloads)."""
    with Bitrix24Emulator(activities=N_EXPORT, seed=11, rate_limit=None) as emu:
        yield emu


@pytest.fixture(scope="module")
def fetch_expected(big_emu: Bitrix24Emulator) -> list[dict[str, Any]]:
    return expected_activities(big_emu, FETCH_IDS)


@pytest.fixture(scope="module")
def export_reference(big_emu: Bitrix24Emulator, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The sha256 of a fault-free export, after checking that export field by field against the store."""
    DEFAULT_REGISTRY.clear()
    path = tmp_path_factory.mktemp("export-ref") / "ref.jsonl"
    conn = big_emu.connection()
    conn["extra"] = {**conn["extra"], "rate_limit": 0}
    saved = os.environ.get("AIRFLOW_CONN_BITRIX24_DEFAULT")
    os.environ["AIRFLOW_CONN_BITRIX24_DEFAULT"] = json.dumps(conn)
    try:
        summary = Bitrix24ExportActivitiesOperator(task_id="ref", path=str(path), **WINDOW).execute({})  # type: ignore[arg-type]
    finally:
        if saved is None:
            os.environ.pop("AIRFLOW_CONN_BITRIX24_DEFAULT", None)
        else:
            os.environ["AIRFLOW_CONN_BITRIX24_DEFAULT"] = saved
    assert summary["rows"] == N_EXPORT
    rows = list(read_jsonl(path))
    assert rows == expected_activities(big_emu, list(range(1, N_EXPORT + 1)))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def big(big_emu: Bitrix24Emulator) -> Iterator[Bitrix24Emulator]:
    big_emu.faults.clear()
    big_emu.reset_limits()
    big_emu.stats_reset()
    yield big_emu
    big_emu.faults.clear()


class TimeMachine:
    """Moves the provider's clocks forward (client limiter, sensor, trigger) without sleeping."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = 0.0
        self.sleeps: list[float] = []
        real_time, real_monotonic, real_sleep = time.time, time.monotonic, asyncio.sleep

        def now() -> float:
            return real_time() + self.offset

        async def wait(_wake: asyncio.Event, seconds: float) -> None:
            self.sleeps.append(seconds)
            self.offset += seconds
            await real_sleep(0)

        self.now = now
        monkeypatch.setattr(client_limiter.SystemClock, "time", lambda _self: now())
        monkeypatch.setattr(sensor_module, "_now", now)
        # The trigger's wait after a 429 is ``seconds_until_retry`` (client.errors), which reads time.time();
        # the triggers' waits are the shared poller's (one poller per connection).
        monkeypatch.setattr(client_errors, "time", types.SimpleNamespace(time=now))
        monkeypatch.setattr(shared_poller, "_monotonic", lambda: real_monotonic() + self.offset)
        monkeypatch.setattr(shared_poller, "_wait", wait)


# --------------------------------------------------------------------------------------------- faults
def fault_action(case: Case, emu: Bitrix24Emulator, conn: dict[str, Any]) -> Callable[[], None]:
    """What to do to the emulator when the armed request arrives."""
    add = emu.faults.add
    actions: dict[str, Callable[[], Any]] = {
        "query_limit": lambda: add("query_limit", times=3),
        "op_limit_short": lambda: add("operation_time_limit", reset_in=0),
        "op_limit_long": lambda: add("operation_time_limit", reset_in=600),
        "http_500_json": lambda: add("http_500_json", times=2),
        "http_500_html": lambda: add("http_500_html", times=2),
        "http_502_json": lambda: add("error", times=2, status=502, error="", error_description="Bad Gateway"),
        "http_502_html": lambda: add("http_502_html", times=2),
        "http_504_json": lambda: add(
            "error", times=2, status=504, error="", error_description="Gateway Time-out"
        ),
        "http_504_html": lambda: add("http_504_html", times=2),
        "truncated_json": lambda: add("truncated_json"),
        "malformed_json": lambda: add("malformed_json"),
        "connection_reset": lambda: add("connection_reset"),
        "read_timeout": lambda: add("slow", seconds=1.6),
        "redirect": lambda: add("redirect"),
        "expired_token": emu.expire_tokens,
        "invalid_grant": lambda: (emu.expire_tokens(), emu.revoke_refresh_tokens()),
        "batch_access_denied": lambda: add(
            "batch_command_error", method="crm.activity.list", error="", error_description="Access denied."
        ),
        "batch_server_error": lambda: add(
            "batch_command_error",
            method="crm.activity.list",
            status=500,
            error="INTERNAL_SERVER_ERROR",
            error_description="Internal server error",
        ),
        "overload": lambda: add("overload", times=None),
    }
    if case.id == "rotated_elsewhere":
        seed_refresh = conn["extra"]["refresh_token"]

        def rotate_elsewhere() -> None:
            """Another worker: its token expired too, it refreshed first and saved the new pair."""
            emu.expire_tokens()
            rotated = emu.portal.oauth.rotate(seed_refresh)
            assert rotated is not None
            access, refresh, expires = rotated
            os.environ[TOKEN_VAR_ENV] = json.dumps(
                {"access_token": access, "refresh_token": refresh, "expires": expires}
            )

        return rotate_elsewhere
    return actions[case.id]


def rest_requests(emu: Bitrix24Emulator) -> int:
    return int(emu.stats["requests"])


def check_tokens(case: Case, emu: Bitrix24Emulator) -> None:
    """What the OAuth server saw: exactly the refreshes the case calls for, never a dead token."""
    stats = emu.stats
    if case.id == "expired_token":
        assert (stats["token_refreshes"], stats["token_errors"]) == (1, 0)
    elif case.id == "rotated_elsewhere":
        assert (stats["token_requests"], stats["token_errors"]) == (0, 0)  # the stored pair was used
    elif case.id == "invalid_grant":
        assert (stats["token_requests"], stats["token_errors"]) == (1, 1)  # one attempt, no storm
    else:
        assert stats["token_requests"] == 0
    assert stats["oauth_secrets_in_query"] == 0
    if case.oauth:
        assert stats["error_codes"].get("expired_token", 0) >= 1, stats["error_codes"]
    else:
        assert stats["faults_injected"] >= 1  # the scripted fault really hit the workload


def check_error(expect: Expect, error: BaseException | None) -> None:
    """FAIL: AirflowFailException naming the cause; RAISE: the Bitrix24 class itself (Airflow retries)."""
    if expect.outcome is Outcome.FAIL:
        assert isinstance(error, AirflowFailException), repr(error)
        assert expect.needle in str(error), str(error)
    else:
        cls = getattr(b24_exceptions, expect.needle)
        assert isinstance(error, cls) and not isinstance(error, AirflowFailException), repr(error)
        if expect.needle == "Bitrix24OperationTimeLimit":
            assert "resets at" in str(error), str(error)


# --------------------------------------------------------------------------------------------- the matrix
#: Cells that expose open bugs in package code (strict: the mark goes once the bug is fixed).
#: Cells that fail because of an open bug in package code, with the bug (strict xfail: a fix turns
#: it into a failure, so the entry goes with the fix). None open.
KNOWN_BUGS: dict[tuple[str, str], str] = {}


def matrix_params() -> list[Any]:
    return [
        pytest.param(c, w, id=f"{c}-{w}", marks=[pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[(c, w)])])
        if (c, w) in KNOWN_BUGS
        else pytest.param(c, w, id=f"{c}-{w}")
        for c, w in cells()
    ]


@pytest.mark.parametrize(("case_id", "workload"), matrix_params())
def test_cell(
    case_id: str,
    workload: str,
    *,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    arm: Arm,
    tmp_path: Path,
) -> None:
    case = CASE_BY_ID[case_id]
    expect = case.expect[workload]
    runner = {
        "fetch": run_fetch,
        "poke": run_poke,
        "trigger": run_trigger,
        "export": run_export,
        "write": run_write,
    }
    texts = runner[workload](case, expect, request=request, monkeypatch=monkeypatch, arm=arm, tmp=tmp_path)
    captured = capfd.readouterr()
    emu: Bitrix24Emulator = texts.pop(0)  # type: ignore[assignment]
    assert_no_secrets([*texts, captured.out, captured.err, caplog.text], emulator_secrets(emu), case_id)


def run_fetch(
    case: Case,
    expect: Expect,
    *,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    arm: Arm,
    tmp: Path,
) -> list[Any]:
    emu: Bitrix24Emulator = request.getfixturevalue("big")
    conn = use_connection(emu, monkeypatch, oauth=case.oauth)
    armed = arm(emu, 1, fault_action(case, emu, conn))
    op = Bitrix24GetActivitiesOperator(task_id="fetch", activity_ids=FETCH_IDS, retries=3)
    ti = TI()
    value, error = None, None
    try:
        value = op.execute({"ti": ti})  # type: ignore[arg-type]
    except Exception as exc:
        error = exc
    assert armed.fired.is_set()
    if expect.outcome is Outcome.EXACT:
        assert error is None, repr(error)
        assert value == request.getfixturevalue("fetch_expected")
        assert ti.pushed["missing_ids"] == []
    else:
        check_error(expect, error)
        assert rest_requests(emu) == 2  # the fault was answered once: no retry storm, no blind re-send
    check_tokens(case, emu)
    return [emu, *exception_texts(error), repr(value)[:200_000], repr(ti.pushed)]


def run_export(
    case: Case,
    expect: Expect,
    *,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    arm: Arm,
    tmp: Path,
) -> list[Any]:
    reference: str = request.getfixturevalue("export_reference")
    emu: Bitrix24Emulator = request.getfixturevalue("big")
    conn = use_connection(emu, monkeypatch, oauth=case.oauth)
    armed = arm(emu, 1, fault_action(case, emu, conn))
    path = tmp / "out" / "activities.jsonl"
    path.parent.mkdir()
    value, error = None, None
    try:
        value = Bitrix24ExportActivitiesOperator(
            task_id="export", path=str(path), retries=3, **WINDOW
        ).execute({})  # type: ignore[arg-type]
    except Exception as exc:
        error = exc
    assert armed.fired.is_set()
    if expect.outcome is Outcome.EXACT:
        assert error is None, repr(error)
        assert value is not None and value["rows"] == N_EXPORT
        assert hashlib.sha256(path.read_bytes()).hexdigest() == reference  # same bytes as the fault-free run
        body = path.read_text(encoding="utf-8")
    else:
        check_error(expect, error)
        assert rest_requests(emu) == 2
        body = ""
        assert sorted(p.name for p in path.parent.iterdir()) == []  # no partial or temporary file
    check_tokens(case, emu)
    return [emu, *exception_texts(error), repr(value), body]


def sensor_emulator(request: pytest.FixtureRequest) -> Bitrix24Emulator:
    factory = request.getfixturevalue("bitrix24_emulator_factory")
    emu: Bitrix24Emulator = factory(activities=len(SENSOR_IDS), seed=7, rate_limit=None)
    for activity_id in SENSOR_IDS:
        emu.store.update(activity_id, {"COMPLETED": "Y" if activity_id <= 5 else "N"})
    return emu


def complete_all_then(emu: Bitrix24Emulator, action: Callable[[], None]) -> Callable[[], None]:
    def both() -> None:
        for activity_id in SENSOR_IDS[5:]:
            emu.store.complete(activity_id)
        action()

    return both


def run_poke(
    case: Case,
    expect: Expect,
    *,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    arm: Arm,
    tmp: Path,
) -> list[Any]:
    emu = sensor_emulator(request)
    conn = use_connection(emu, monkeypatch, oauth=case.oauth)
    clock = TimeMachine(monkeypatch) if expect.outcome is Outcome.WAIT_RESET else None
    arm(emu, 1, complete_all_then(emu, fault_action(case, emu, conn)))
    sensor = Bitrix24ActivitySensor(task_id="wait", activity_ids=SENSOR_IDS, poke_interval=0.05, timeout=60)
    texts: list[Any] = [emu]
    try:
        assert sensor.poke({}).is_done is False  # type: ignore[arg-type] # 5 of 10 completed; nothing armed yet
        error: BaseException | None = None
        result = None
        try:
            result = sensor.poke({})  # type: ignore[arg-type] # the fault hits this poke
        except Exception as exc:
            error = exc
        texts += exception_texts(error)
        if expect.outcome is Outcome.FAIL:
            check_error(expect, error)
            assert rest_requests(emu) == 2
        elif expect.outcome is Outcome.EXACT:
            assert error is None and result is not None and result.is_done, repr(error)
            texts.append(repr(result.xcom_value))
            assert result.xcom_value == expected_activities(emu, SENSOR_IDS)
        else:  # WAIT and WAIT_RESET: not a failure, keep waiting
            assert error is None and result is not None and result.is_done is False, repr(error)
            if clock is not None:
                before = rest_requests(emu)
                assert sensor.poke({}).is_done is False  # type: ignore[arg-type] # before the reset: no I/O
                assert rest_requests(emu) == before
                clock.offset += 601
            final = sensor.poke({})  # type: ignore[arg-type]
            assert final.is_done, "the sensor should be done once the fault is gone"
            texts.append(repr(final.xcom_value))
            assert final.xcom_value == expected_activities(emu, SENSOR_IDS)
            assert rest_requests(emu) == 3
    finally:
        sensor.hook.close()
    check_tokens(case, emu)
    return texts


def run_trigger(
    case: Case,
    expect: Expect,
    *,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    arm: Arm,
    tmp: Path,
) -> list[Any]:
    emu = sensor_emulator(request)
    conn = use_connection(emu, monkeypatch, oauth=case.oauth)
    clock = TimeMachine(monkeypatch) if expect.outcome is Outcome.WAIT_RESET else None
    arm(emu, 1, complete_all_then(emu, fault_action(case, emu, conn)))
    trigger = Bitrix24ActivityTrigger(activity_ids=SENSOR_IDS, poll_interval=0.05, first_poll_delay=0)

    async def first_event() -> Any:
        events = trigger.run()
        try:
            return await asyncio.wait_for(events.__anext__(), timeout=30)
        finally:
            await events.aclose()

    event = asyncio.run(first_event()).payload
    texts: list[Any] = [emu, json.dumps(event, default=str)]
    sensor = Bitrix24ActivitySensor(task_id="wait", activity_ids=SENSOR_IDS, deferrable=True)
    if expect.outcome is Outcome.ERROR_EVENT:
        assert event["status"] == "error" and expect.needle in event["message"], event
        assert rest_requests(emu) == 2  # no polling after an error waiting cannot fix
        with pytest.raises(AirflowFailException, match=expect.needle) as failed:
            sensor.execute_complete({}, event)  # type: ignore[arg-type]
        texts += exception_texts(failed.value)
    else:
        assert event["status"] == "success", event
        assert sensor.execute_complete({}, event) == expected_activities(emu, SENSOR_IDS)  # type: ignore[arg-type]
        if expect.outcome is not Outcome.EXACT:  # (EXACT cells may include the client's own retries)
            assert rest_requests(emu) == 3  # poll 1, the failed poll, the poll after the fault
        if clock is not None:
            assert max(clock.sleeps) >= 600, clock.sleeps  # it slept past operating_reset_at
    check_tokens(case, emu)
    return texts


def run_write(
    case: Case,
    expect: Expect,
    *,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    arm: Arm,
    tmp: Path,
) -> list[Any]:
    factory = request.getfixturevalue("bitrix24_emulator_factory")
    emu: Bitrix24Emulator = factory(activities=5, seed=9, rate_limit=None)
    conn = use_connection(emu, monkeypatch, oauth=case.oauth)
    arm(emu, 0, fault_action(case, emu, conn))
    rows_before = len(emu.store)
    hook = Bitrix24Hook()
    value, error = None, None
    try:
        value = hook.add_activity(NEW_ACTIVITY)
    except Exception as exc:
        error = exc
    finally:
        hook.close()
    created = len(emu.store) - rows_before
    if expect.outcome is Outcome.EXACT:
        assert error is None, repr(error)
        assert created == 1
        assert value is not None and emu.store.get(value)["SUBJECT"] == NEW_ACTIVITY["SUBJECT"]
    else:
        cls = getattr(b24_exceptions, expect.needle)
        assert isinstance(error, cls), repr(error)
        assert rest_requests(emu) == 1, (
            "a write must never be re-sent after a failure that may have executed it"
        )
        assert created <= 1
        if expect.outcome is Outcome.NOT_RESENT:
            assert "not repeated" in str(error), str(error)
        else:
            assert created == 0
        if case.id == "invalid_grant":
            assert "re-authorised" in str(error)
    check_tokens(case, emu)
    return [emu, *exception_texts(error), repr(value)]


def test_update_is_not_resent_after_a_read_timeout(
    bitrix24_emulator_factory: Callable[..., Bitrix24Emulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``update_activity`` is a write too: a timeout leaves it executed once, and it is not repeated."""
    emu = bitrix24_emulator_factory(activities=5, seed=9, rate_limit=None)
    use_connection(emu, monkeypatch)
    emu.faults.add("slow", method="crm.activity.update", seconds=1.6)
    hook = Bitrix24Hook()
    try:
        with pytest.raises(b24_exceptions.Bitrix24TransportError, match="not repeated"):
            hook.update_activity(3, {"SUBJECT": "updated once"})
    finally:
        hook.close()
    assert emu.stats["requests"] == 1  # one update request, executed once (the emulator runs it, then stalls)
    assert emu.store.get(3)["SUBJECT"] == "updated once"


def test_matrix_table_is_in_the_docs() -> None:
    """docs/reliability.md carries the table generated from the same parametrization."""
    docs = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
    assert table() in docs.read_text(encoding="utf-8"), "regenerate: python tests/reliability/matrix.py"


def test_stale_connection_seeds_lose_to_the_token_variable(
    bitrix24_emulator_factory: Callable[..., Bitrix24Emulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker rotated the pair before this task started: the connection's seed refresh token is
    dead, the token Variable holds the live pair. The hook must use the Variable (no refresh at all)."""
    emu = bitrix24_emulator_factory(activities=20, seed=23, rate_limit=None)
    conn = use_connection(emu, monkeypatch, oauth=True)
    rotated = emu.portal.oauth.rotate(conn["extra"]["refresh_token"])
    assert rotated is not None
    access, refresh, expires = rotated
    monkeypatch.setenv(
        TOKEN_VAR_ENV, json.dumps({"access_token": access, "refresh_token": refresh, "expires": expires})
    )
    op = Bitrix24GetActivitiesOperator(task_id="fetch", activity_ids=[3, 1, 2])
    assert op.execute({"ti": TI()}) == expected_activities(emu, [3, 1, 2])  # type: ignore[arg-type]
    stats = emu.stats
    assert (stats["token_requests"], stats["rejected_auth"]) == (0, 0)


def test_debug_logs_never_show_the_webhook_code(
    bitrix24_emulator_factory: Callable[..., Bitrix24Emulator], caplog: pytest.LogCaptureFixture
) -> None:
    """Without Airflow's masker: the client at DEBUG (one line per request) and urllib3 at DEBUG (which
    logs request paths, i.e. ``/rest/<user>/<code>/...``) through a retry, a portal move and a reset."""
    emu = bitrix24_emulator_factory(activities=3000, seed=29, rate_limit=None)
    emu.faults.add("http_500_html")
    emu.faults.add("redirect")
    emu.faults.add("connection_reset")
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("reliability.client")
    config = ClientConfig(rate_limit=0, backoff_base=0, backoff_max=0, verify=emu.ca_cert or True)
    with Bitrix24Client(
        emu.base_url, WebhookAuth(user_id="1", code=emu.webhook_code), config, logger=log
    ) as c:
        result = fetch_activities(c, list(range(1, 3001)))
        rows = list(c.iter_list("crm.activity.list", {"select": ["ID"]}))
    assert len(result.activities) == 3000 and len(rows) == 3000
    assert emu.stats["faults_injected"] == 3
    text = caplog.text
    assert "/rest/1/***/batch" in text  # the per-request DEBUG line is there, redacted
    assert any(r.name.startswith("urllib3") for r in caplog.records)  # urllib3's own lines were captured
    assert_no_secrets([text, *(str(r.args) for r in caplog.records)], [emu.webhook_code], "DEBUG logs")
