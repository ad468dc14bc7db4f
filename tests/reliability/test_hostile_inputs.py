"""Hostile inputs: whatever a DAG, a connection or a server hands over ends in a typed answer.

* activity IDs (any JSON value, strings, huge lists, unicode digits, bools) → ``list[int]`` or
  ``InvalidActivityIds``, never another exception and never a request;
* ``parse_activity`` on arbitrary JSON objects → a typed dict or ``ActivityParseError`` naming the field;
* connection fields → ``ConnectionSettings`` or ``Bitrix24ConfigError`` naming the field, never echoing
  the secret;
* server payloads (wrong types, no ``result``, extra keys, 10 MB strings) → data or a typed error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pendulum
import pytest
import requests_mock
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from airflow_provider_b24._compat import AirflowFailException
from airflow_provider_b24.activities import (
    ACTIVITY_FIELD_TYPES,
    ActivityParseError,
    InvalidActivityIds,
    coerce_activity_ids,
    fetch_activities,
    parse_activity,
)
from airflow_provider_b24.client import Bitrix24Client, ClientConfig, WebhookAuth
from airflow_provider_b24.client.config import settings_from_fields
from airflow_provider_b24.exceptions import Bitrix24ConfigError, Bitrix24Error
from airflow_provider_b24.export import export_activities
from airflow_provider_b24.operators.activity import Bitrix24GetActivitiesOperator
from tests.reliability.conftest import CONN_ENV

PORTAL = "https://hostile.bitrix24.test"
CODE = "hostilewebhookcode0123456789"
FAST = ClientConfig(max_retries=1, rate_limit=0, backoff_base=0, backoff_max=0, operating_max_wait=0)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=4) | st.just("ID"), inner, max_size=4)
    ),
    max_leaves=12,
)
digit_strings = st.text(
    alphabet=st.sampled_from("0123456789 ,-+[](){}\"'١٢٣٤٥٦٧٨٩٠²³¹०१२۳\u00a0\t\nxe._"), max_size=16
)
hostile_ids = (
    json_values
    | digit_strings
    | st.lists(digit_strings, max_size=6)
    | st.lists(json_scalars, max_size=6).map(json.dumps)
    | st.lists(st.integers(min_value=-3, max_value=10**12), max_size=6).map(str)
)


@pytest.fixture
def no_network() -> Iterator[requests_mock.Mocker]:
    """Any HTTP request fails the test (no URL is registered) and is counted."""
    with requests_mock.Mocker() as mocker:
        yield mocker


class TI:
    def xcom_push(self, key: str, value: Any) -> None:
        pass


def check_ids(value: Any) -> list[int] | None:
    """The documented contract of ``coerce_activity_ids``; ``None`` when the value is refused."""
    try:
        ids = coerce_activity_ids(value)
    except InvalidActivityIds as err:
        assert str(err).startswith("invalid activity ID"), str(err)
        return None
    assert all(type(i) is int and i > 0 for i in ids), ids
    assert len(set(ids)) == len(ids)
    return ids


@settings(
    derandomize=True,
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(value=hostile_ids)
def test_id_coercion_is_total(value: Any, no_network: requests_mock.Mocker) -> None:
    check_ids(value)
    assert no_network.call_count == 0


@settings(
    derandomize=True,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(value=hostile_ids)
def test_operator_refuses_bad_ids_before_any_request(
    value: Any, no_network: requests_mock.Mocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        CONN_ENV, json.dumps({"conn_type": "bitrix24", "host": PORTAL, "login": "1", "password": CODE})
    )
    ids = check_ids(value)
    if ids:  # valid IDs would (rightly) be fetched; that is the other tests' business
        return
    op = Bitrix24GetActivitiesOperator(task_id="fetch", activity_ids=value)
    if ids is None:
        with pytest.raises(AirflowFailException, match="activity_ids and select failed: invalid activity ID"):
            op.execute({"ti": TI()})  # type: ignore[arg-type]
    else:
        assert op.execute({"ti": TI()}) == []  # type: ignore[arg-type]
    assert no_network.call_count == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("١٢٣", None),  # Arabic-Indic digits: not ASCII, refused (documented: a numeric string)
        ("²", None),
        (True, None),
        ([1, True], None),
        (float("nan"), None),
        (2**64, [2**64]),
        ("[1, 2, 2, 3]", [1, 2, 3]),
        ([{"ID": "7"}, {"id": 8}], [7, 8]),
    ],
)
def test_id_coercion_edge_cases(
    value: Any, expected: list[int] | None, no_network: requests_mock.Mocker
) -> None:
    assert check_ids(value) == expected


def test_huge_id_list_is_coerced_without_a_request(no_network: requests_mock.Mocker) -> None:
    values = [str(i) for i in range(1, 200_001)] + ["12"]
    assert check_ids(values) == list(range(1, 200_001))
    assert check_ids(json.dumps(values)) == list(range(1, 200_001))
    assert check_ids([*range(1, 100_000), "x"]) is None
    assert no_network.call_count == 0


# ------------------------------------------------------------------------------------- parse_activity
field_names = st.sampled_from(sorted(ACTIVITY_FIELD_TYPES)) | st.text(max_size=8)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(raw=st.dictionaries(field_names, json_values, max_size=8))
def test_parse_activity_is_typed_or_names_the_field(raw: dict[str, Any]) -> None:
    try:
        parsed = parse_activity(raw)
    except ActivityParseError as err:
        top = err.field.split("[")[0].split(".")[0]
        assert top in raw, (err.field, raw)
        assert err.field in str(err)
        return
    assert set(parsed) == set(raw)
    for name, value in parsed.items():
        kind = ACTIVITY_FIELD_TYPES.get(name)
        if value is None or kind is None:
            continue
        if name in ("ID", "OWNER_ID", "RESPONSIBLE_ID") and raw[name] not in ("", None):
            assert type(value) is int
        if name in ("CREATED", "LAST_UPDATED", "START_TIME") and raw[name] not in ("", None):
            assert isinstance(value, pendulum.DateTime) and value.utcoffset() is not None


@settings(derandomize=True, max_examples=200, deadline=None)
@given(
    value=st.one_of(
        st.text(max_size=30),
        st.from_regex(r"\A-?[0-9]{1,25}(\.[0-9]{0,6})?\Z"),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
    ),
    name=st.sampled_from(
        ["ID", "COMPLETED", "DEADLINE", "RESULT_SUM", "SETTINGS", "COMMUNICATIONS", "OWNER_TYPE_ID"]
    ),
)
def test_parse_activity_scalar_fields(value: Any, name: str) -> None:
    try:
        parsed = parse_activity({name: value})[name]
    except ActivityParseError as err:
        assert err.field.startswith(name)
        return
    if name == "RESULT_SUM" and parsed is not None and parsed != "":
        assert isinstance(parsed, Decimal) and parsed.is_finite()
    if name == "COMPLETED" and value in ("Y", "N"):
        assert parsed is (value == "Y")


# ------------------------------------------------------------------------------------- connection fields
@pytest.mark.parametrize(
    ("fields", "names"),
    [
        ({"host": "", "login": "1", "password": CODE}, "host"),
        ({"host": "   ", "login": "1", "password": CODE}, "host"),
        ({"host": "https://x.bitrix24.com/rest/1/abc/", "login": "1", "password": CODE}, "host"),
        ({"host": "https://x.bitrix24.com/crm", "login": "1", "password": CODE}, "host"),
        ({"host": "ftp://x.bitrix24.com", "login": "1", "password": CODE}, "host"),
        ({"host": "https://u:p@x.bitrix24.com", "login": "1", "password": CODE}, "host"),
        ({"host": "https://[::1", "login": "1", "password": CODE}, "host"),
        ({"host": "x.bitrix24.com", "port": "http", "login": "1", "password": CODE}, "port"),
        ({"host": "x.bitrix24.com", "login": "abc", "password": CODE}, "login"),
        ({"host": "x.bitrix24.com", "login": "-1", "password": CODE}, "login"),
        ({"host": "x.bitrix24.com", "login": "0", "password": CODE}, "login"),
        pytest.param({"host": "x.bitrix24.com", "login": "²", "password": CODE}, "login"),
        ({"host": "x.bitrix24.com", "login": "1", "password": ""}, "password"),
        ({"host": "x.bitrix24.com", "login": "1", "password": f"{CODE}/crm.activity.get"}, "password"),
        ({"host": None, "extra": {"webhook_url": "https://x.bitrix24.com/rest/1/"}}, "webhook_url"),
        (
            {"host": None, "extra": {"webhook_url": "https://x.bitrix24.com/rest/abc/" + CODE + "/"}},
            "webhook_url",
        ),
        (
            {
                "host": None,
                "extra": {"webhook_url": "https://x.bitrix24.com/rest/1/" + CODE + "/crm.activity.get"},
            },
            "webhook_url",
        ),
        ({"host": None, "extra": {"webhook_url": "https://x.bitrix24.com/" + CODE}}, "webhook_url"),
        pytest.param(
            {"host": None, "extra": {"webhook_url": "https://[x.bitrix24.com/rest/1/" + CODE + "/"}},
            "webhook_url",
        ),
        (
            {"host": "x.bitrix24.com", "login": "1", "password": CODE, "extra": {"auth_type": "oauht"}},
            "auth_type",
        ),
        ({"host": "x.bitrix24.com", "extra": {"auth_type": "oauth", "client_secret": CODE}}, "client_id"),
        ({"host": "x.bitrix24.com", "extra": {"auth_type": "oauth", "client_id": "app"}}, "client_secret"),
        ({"host": "x.bitrix24.com", "login": "1", "password": CODE, "extra": {"timeout": "soon"}}, "timeout"),
        (
            {"host": "x.bitrix24.com", "login": "1", "password": CODE, "extra": {"max_retries": "1.5"}},
            "max_retries",
        ),
        (
            {
                "host": "x.bitrix24.com",
                "login": "1",
                "password": CODE,
                "extra": {"verify": "/no/such/ca.pem"},
            },
            "verify",
        ),
    ],
)
def test_bad_connection_fields_name_the_field(fields: dict[str, Any], names: str) -> None:
    with pytest.raises(Bitrix24ConfigError) as caught:
        settings_from_fields(**fields)
    text = str(caught.value)
    assert names in text, text
    assert CODE not in text  # the secret is never echoed


@settings(derandomize=True, max_examples=300, deadline=None)
@given(
    host=st.none()
    | st.text(max_size=30)
    | st.sampled_from(["https://x.bitrix24.com", "x.bitrix24.com:8443"]),
    login=st.none() | st.text(max_size=6) | st.integers(-5, 10**6),
    port=st.none() | st.integers(-5, 70_000) | st.text(max_size=5),
    extra=st.dictionaries(
        st.sampled_from(
            ["auth_type", "webhook_url", "timeout", "max_retries", "rate_limit", "burst", "verify"]
        ),
        st.none() | st.booleans() | st.integers(-3, 100) | st.floats() | st.text(max_size=20),
        max_size=3,
    ),
)
@example(host=None, login=None, port=None, extra={"webhook_url": "["})
@example(host="x.bitrix24.com", login="²", port=None, extra={})
def test_connection_fields_are_total(host: Any, login: Any, port: Any, extra: dict[str, Any]) -> None:
    """Any field values: settings, or ``Bitrix24ConfigError`` (never another exception, never the code)."""
    try:
        settings_from_fields(host=host, login=login, password=CODE, port=port, extra=extra)
    except Bitrix24ConfigError as err:
        assert CODE not in str(err)


# ------------------------------------------------------------------------------------- server payloads
def client() -> Bitrix24Client:
    return Bitrix24Client(PORTAL, WebhookAuth(user_id="1", code=CODE), FAST)


def batch_url() -> str:
    return f"{PORTAL}/rest/1/{CODE}/batch"


def list_url() -> str:
    return f"{PORTAL}/rest/1/{CODE}/crm.activity.list"


TIME = {"start": 1.0, "finish": 1.1, "duration": 0.1, "processing": 0.1}
ROW = {"ID": "5", "SUBJECT": "s", "COMPLETED": "N", "LAST_UPDATED": "2024-05-01T10:00:00+03:00"}
BIG = "x" * (10 * 1024 * 1024)


@pytest.mark.parametrize(
    "body",
    [
        {
            "result": {"result": {"ids0": [{**ROW, "EXTRA_KEY": {"nested": [1, 2]}, "UF_CRM_1": None}]}},
            "time": TIME,
            "more": 1,
        },
        {"result": {"result": {"ids0": {"0": ROW}}, "result_error": []}, "time": TIME},
        {"result": {"result": {"ids0": [{**ROW, "SUBJECT": BIG}]}}, "time": TIME},
        {"result": {"result": {"ids0": [{**ROW, "ID": "abc"}]}}, "time": TIME},
        {"result": {"result": {"ids0": [{**ROW, "ID": ["5"]}]}}, "time": TIME},
        {"result": {"result": {"ids0": [{**ROW, "LAST_UPDATED": "yesterday"}]}}, "time": TIME},
        {"result": {"result": {"ids0": ["5"]}}, "time": TIME},
        {"result": {"result": {"ids0": [{**ROW, "COMPLETED": BIG}]}}, "time": TIME},
        {"result": "oops", "time": TIME},
        {"result": {"result": "oops"}, "time": TIME},
        {"result": {"result": {"ids0": 42}}, "time": TIME},
        {"result": None, "time": TIME},
        {"time": TIME},
        [1, 2, 3],
        "just a string",
        {"error": ["not", "a", "string"], "error_description": {"x": 1}},
        {"error": "", "error_description": BIG},
    ],
    ids=lambda body: json.dumps(body)[:60],
)
def test_fetch_survives_any_batch_payload(body: Any) -> None:
    """Data, or a typed error: ``Bitrix24Error`` or ``ActivityParseError`` (a ``ValueError``). Never an
    ``AttributeError``/``TypeError``/``KeyError``, and never a secret in the message."""
    with requests_mock.Mocker() as mocker:
        mocker.post(batch_url(), text=json.dumps(body))
        with client() as c:
            try:
                result = fetch_activities(c, [5])
                parsed = [parse_activity(row) for row in result.activities]
            except (Bitrix24Error, ActivityParseError) as err:
                assert CODE not in str(err)
                return
    assert [row["ID"] for row in parsed] in ([5], [])


@pytest.mark.parametrize(
    "body",
    [
        {"time": TIME},
        {"result": None, "time": TIME},
        {"result": {"result": "oops"}, "time": TIME},
        {"result": {}, "time": TIME},
    ],
    ids=["no-result", "null-result", "string-result", "empty-result"],
)
def test_fetch_does_not_report_a_malformed_answer_as_missing_ids(body: Any) -> None:
    """A 200 batch answer that carries no per-command result is a broken answer, not "no such activity":
    reporting the IDs as missing would make a sensor wait forever and an operator with on_missing='warn'
    silently drop rows."""
    with requests_mock.Mocker() as mocker:
        mocker.post(batch_url(), text=json.dumps(body))
        with client() as c, pytest.raises(Bitrix24Error):
            fetch_activities(c, [5])


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"time": TIME}),
        pytest.param({"result": None, "time": TIME}),
        {"result": "oops", "time": TIME},
    ],
    ids=["no-result", "null-result", "string-result"],
)
def test_export_does_not_turn_a_malformed_answer_into_an_empty_file(body: Any, tmp_path: Any) -> None:
    """An export whose first page is a 200 without ``result`` must fail, not "succeed" with 0 rows."""
    path = tmp_path / "out.jsonl"
    with requests_mock.Mocker() as mocker:
        mocker.post(list_url(), text=json.dumps(body))
        with client() as c, pytest.raises((Bitrix24Error, ValueError)):
            export_activities(
                c,
                updated_from="2024-01-01T00:00:00+00:00",
                updated_to="2025-01-01T00:00:00+00:00",
                path=str(path),
            )
    assert not path.exists()


@pytest.mark.parametrize("status", [200, 400, 500, 503])
@pytest.mark.parametrize(
    "text",
    ["", "null", "<html>" + "x" * 1000, "{", json.dumps({"error": 5}), "\x00\xff" * 10, BIG],
    ids=["empty", "null", "html", "brace", "error-int", "binary", "10MB"],
)
def test_call_survives_any_body(status: int, text: str) -> None:
    with requests_mock.Mocker() as mocker:
        mocker.post(f"{PORTAL}/rest/1/{CODE}/crm.activity.get", text=text, status_code=status)
        with client() as c:
            try:
                c.call("crm.activity.get", {"id": 5})
            except Bitrix24Error as err:
                assert CODE not in str(err) and len(str(err)) < 5000
                assert re.search(r"HTTP \d{3}|\(method crm\.activity\.get", str(err)), str(err)
            else:
                assert status == 200 and text in ("null",), "a non-JSON or error body must raise"


def test_nan_and_huge_numbers_in_rows() -> None:
    row = parse_activity({"ID": str(2**63), "RESULT_SUM": "1e400", "RESULT_VALUE": "-0.000"})
    assert row["ID"] == 2**63
    assert isinstance(row["RESULT_SUM"], Decimal) and row["RESULT_SUM"].is_finite()


@pytest.mark.parametrize(
    "body",
    [
        {"result": {"result": {"ids0": [{**ROW, "COMPLETED": BIG}]}}, "time": TIME},
        {"result": {"result": {"ids0": [{**ROW, "LAST_UPDATED": BIG}]}}, "time": TIME},
        {"error": "", "error_description": BIG},
        {"error": "INTERNAL_SERVER_ERROR", "error_description": BIG},
    ],
    ids=["bad-flag", "bad-datetime", "legacy-error", "coded-error"],
)
def test_error_messages_stay_short_for_huge_values(body: Any) -> None:
    """A 10 MB value in a broken answer must not become a 10 MB exception message (task logs, UI)."""
    with requests_mock.Mocker() as mocker:
        mocker.post(batch_url(), text=json.dumps(body))
        with client() as c, pytest.raises((Bitrix24Error, ActivityParseError)) as caught:
            [parse_activity(row) for row in fetch_activities(c, [5]).activities]
    assert len(str(caught.value)) < 5000, f"message of {len(str(caught.value))} characters"
