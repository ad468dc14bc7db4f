"""Every row of the system-error table (https://apidocs.bitrix24.com/error-codes.html): status + code ->
class, retried or not."""

from __future__ import annotations

import pickle

import pytest
import requests_mock as rm

from airflow_provider_b24.exceptions import (
    Bitrix24AccessDenied,
    Bitrix24AuthError,
    Bitrix24BadRequest,
    Bitrix24Error,
    Bitrix24InsufficientScope,
    Bitrix24MethodNotFound,
    Bitrix24NotFound,
    Bitrix24OperationTimeLimit,
    Bitrix24Overloaded,
    Bitrix24PortalDeleted,
    Bitrix24RateLimited,
    Bitrix24ServerError,
    Bitrix24TokenExpired,
    Bitrix24TransportError,
    classify_error,
)
from tests.unit.client.b24_client_helpers import BASE, CODE, err, ok

# (HTTP status, error code, description, expected class, retried by the client)
SYSTEM_TABLE = [
    (500, "INTERNAL_SERVER_ERROR", "Internal server error", Bitrix24ServerError, True),
    (500, "ERROR_UNEXPECTED_ANSWER", "Server returned an unexpected response", Bitrix24ServerError, True),
    (503, "QUERY_LIMIT_EXCEEDED", "Too many requests", Bitrix24RateLimited, True),
    (
        405,
        "ERROR_BATCH_METHOD_NOT_ALLOWED",
        "Method is not allowed for batch usage",
        Bitrix24BadRequest,
        False,
    ),
    (400, "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded", Bitrix24BadRequest, False),
    (401, "NO_AUTH_FOUND", "Wrong authorization data", Bitrix24AuthError, False),
    (400, "INVALID_REQUEST", "Https required", Bitrix24BadRequest, False),
    (503, "OVERLOAD_LIMIT", "REST API is blocked due to overload", Bitrix24Overloaded, False),
    (403, "ACCESS_DENIED", "REST API is available only on commercial plans", Bitrix24AccessDenied, False),
    (403, "INVALID_CREDENTIALS", "Invalid request credentials", Bitrix24AuthError, False),
    (401, "INVALID_CREDENTIALS", "Invalid request credentials", Bitrix24AuthError, False),
    (404, "ERROR_MANIFEST_IS_NOT_AVAILABLE", "Manifest is not available", Bitrix24NotFound, False),
    (403, "insufficient_scope", "The request requires higher privileges", Bitrix24InsufficientScope, False),
    (401, "insufficient_scope", "The request requires higher privileges", Bitrix24InsufficientScope, False),
    (401, "expired_token", "The access token provided has expired.", Bitrix24TokenExpired, False),
    (
        403,
        "user_access_error",
        "The user does not have access to the application.",
        Bitrix24AccessDenied,
        False,
    ),
    (500, "PORTAL_DELETED", "Portal was deleted", Bitrix24PortalDeleted, False),
    (410, "PORTAL_DELETED", "Portal was deleted", Bitrix24PortalDeleted, False),
    # SDK error maps
    (401, "invalid_token", "Unable to get application by token", Bitrix24AuthError, False),
    (401, "authorization_error", "Unable to authorize user", Bitrix24AuthError, False),
    (401, "APPLICATION_NOT_FOUND", "Application not found", Bitrix24AuthError, False),
    (401, "ERROR_OAUTH", "Application not installed", Bitrix24AuthError, False),
    (401, "NOT_INSTALLED", "Application not installed", Bitrix24AuthError, False),
    (401, "PAYMENT_REQUIRED", "Subscription has been ended", Bitrix24AccessDenied, False),
    (401, "METHOD_CONFIRM_WAITING", "Waiting for confirmation", Bitrix24AccessDenied, False),
    (403, "METHOD_CONFIRM_DENIED", "", Bitrix24AccessDenied, False),
    (403, "WRONG_AUTH_TYPE", "", Bitrix24AccessDenied, False),
    (403, "ALLOWED_ONLY_INTRANET_USER", "", Bitrix24AccessDenied, False),
    (403, "ACCESS_ERROR", "", Bitrix24AccessDenied, False),
    (400, "INVALID_ARG_VALUE", "", Bitrix24BadRequest, False),
    (404, "ERROR_METHOD_NOT_FOUND", "Method not found!", Bitrix24MethodNotFound, False),
    (400, "NOT_FOUND", "Not found.", Bitrix24NotFound, False),
    # unknown codes fall back to the HTTP status
    (502, "SOMETHING_NEW", "", Bitrix24ServerError, True),
    (504, "", "", Bitrix24ServerError, True),
    (403, "SOMETHING_NEW", "", Bitrix24AccessDenied, False),
    (418, "SOMETHING_NEW", "", Bitrix24BadRequest, False),
]

LEGACY = [
    ("Not found", Bitrix24NotFound),
    ("Activity is not found", Bitrix24NotFound),
    ("NOT FOUND", Bitrix24NotFound),
    ("ID is not defined or invalid.", Bitrix24BadRequest),
    ("Access denied.", Bitrix24AccessDenied),
    ("Access denied", Bitrix24AccessDenied),
    ("Application context required", Bitrix24AccessDenied),
    ("Parameter 'filter' must be array.", Bitrix24BadRequest),
    ("Failed to get list. General error.", Bitrix24BadRequest),
]


@pytest.mark.parametrize(("status", "code", "description", "cls", "retried"), SYSTEM_TABLE)
def test_system_error_table(client, status, code, description, cls, retried) -> None:  # noqa: PLR0917
    with rm.Mocker() as mock:
        route = mock.post(BASE + "crm.activity.get", [err(status, code, description), ok({"ID": "1"})])
        if retried:
            assert client.call("crm.activity.get", {"id": 1}) == {"ID": "1"}
            assert route.call_count == 2
            assert client.stats.retries == 1
        else:
            with pytest.raises(cls) as info:
                client.call("crm.activity.get", {"id": 1})
            assert type(info.value) is cls
            assert route.call_count == 1
            error = info.value
            assert error.code == code
            assert error.description == description
            assert error.http_status == status
            assert error.method == "crm.activity.get"
            assert error.retryable is False
            assert CODE not in str(error) and CODE not in repr(error)


@pytest.mark.parametrize(("description", "cls"), LEGACY)
def test_legacy_400_with_empty_code(client, description, cls) -> None:
    with rm.Mocker() as mock:
        mock.post(BASE + "crm.activity.get", **err(400, "", description))
        with pytest.raises(cls) as info:
            client.call("crm.activity.get", {"id": 999})
    assert type(info.value) is cls
    assert info.value.code == ""
    assert info.value.http_status == 400
    assert description in str(info.value)


def test_retried_errors_give_up_after_max_retries(make_client, clock) -> None:
    client = make_client(max_retries=3)
    with rm.Mocker() as mock:
        route = mock.post(
            BASE + "crm.activity.list", **err(500, "INTERNAL_SERVER_ERROR", "Internal server error")
        )
        with pytest.raises(Bitrix24ServerError) as info:
            client.call("crm.activity.list")
    assert route.call_count == 4
    assert info.value.retryable is True
    # capped exponential backoff with ±20 % jitter: ~1, 2, 4 s
    assert len(clock.sleeps) == 3
    for slept, nominal in zip(clock.sleeps, [1, 2, 4], strict=True):
        assert nominal * 0.8 <= slept <= nominal * 1.2


def test_backoff_is_capped(make_client, clock) -> None:
    client = make_client(max_retries=6, backoff_base=1.0, backoff_max=5.0)
    with rm.Mocker() as mock:
        mock.post(BASE + "crm.activity.list", **err(502, "", ""))
        with pytest.raises(Bitrix24ServerError):
            client.call("crm.activity.list")
    assert max(clock.sleeps) <= 6.0
    assert len(clock.sleeps) == 6


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (502, "<html><body><h1>502 Bad Gateway</h1></body></html>", Bitrix24ServerError),
        (500, "<!DOCTYPE html><title>Error</title>", Bitrix24ServerError),
        (403, "<html>Forbidden by nginx</html>", Bitrix24TransportError),
        (200, '{"result": {"ID": "1", "SUBJ', Bitrix24TransportError),
    ],
)
def test_non_json_bodies(make_client, status, body, cls) -> None:
    client = make_client(max_retries=0)
    with rm.Mocker() as mock:
        mock.post(BASE + "crm.activity.get", status_code=status, text=body)
        with pytest.raises(cls) as info:
            client.call("crm.activity.get", {"id": 1})
    assert info.value.http_status == status
    assert f"HTTP {status}" in str(info.value)
    assert len(info.value.description) < 300


def test_html_excerpt_is_redacted(make_client) -> None:
    client = make_client(max_retries=0)
    page = f"<html>error for /rest/1/{CODE}/crm.activity.get " + "x" * 1000 + "</html>"
    with rm.Mocker() as mock:
        mock.post(BASE + "crm.activity.get", status_code=500, text=page)
        with pytest.raises(Bitrix24ServerError) as info:
            client.call("crm.activity.get", {"id": 1})
    assert CODE not in str(info.value)
    assert "***" in str(info.value)
    assert len(str(info.value)) < 400


def test_truncated_json_is_retried_for_reads(client) -> None:
    with rm.Mocker() as mock:
        route = mock.post(
            BASE + "crm.activity.get", [{"status_code": 200, "text": '{"result": {"ID"'}, ok({"ID": "1"})]
        )
        assert client.call("crm.activity.get", {"id": 1}) == {"ID": "1"}
    assert route.call_count == 2


def test_truncated_json_is_not_retried_for_writes(client) -> None:
    with rm.Mocker() as mock:
        route = mock.post(BASE + "crm.activity.add", [{"status_code": 200, "text": '{"resu'}, ok(5)])
        with pytest.raises(Bitrix24TransportError):
            client.call("crm.activity.add", {"fields": {"SUBJECT": "x"}})
    assert route.call_count == 1


def test_classify_batch_error_without_status() -> None:
    error = classify_error("", "Not found", http_status=None, method="crm.contact.get")
    assert isinstance(error, Bitrix24NotFound)
    assert error.http_status is None
    other = classify_error("", "Something odd", http_status=None, method="crm.contact.get")
    assert isinstance(other, Bitrix24BadRequest)


def test_operation_time_limit_carries_reset_at() -> None:
    error = classify_error("OPERATION_TIME_LIMIT", "blocked", http_status=429, method="m", reset_at=123.0)
    assert isinstance(error, Bitrix24OperationTimeLimit)
    assert isinstance(error, Bitrix24RateLimited)
    assert error.reset_at == 123.0
    assert "123" in str(error)


def test_errors_pickle_round_trip() -> None:
    error = classify_error("OPERATION_TIME_LIMIT", "blocked", http_status=429, method="m", reset_at=5.0)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is Bitrix24OperationTimeLimit
    assert (copy.code, copy.http_status, copy.method, copy.reset_at) == (
        "OPERATION_TIME_LIMIT",
        429,
        "m",
        5.0,
    )
    assert str(copy) == str(error)


def test_every_error_is_a_bitrix24_error() -> None:
    from airflow_provider_b24.exceptions import Bitrix24ConfigError

    assert issubclass(Bitrix24ConfigError, ValueError)
    for cls in (Bitrix24NotFound, Bitrix24AuthError, Bitrix24TransportError, Bitrix24ConfigError):
        assert issubclass(cls, Bitrix24Error)
