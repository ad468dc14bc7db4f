"""The request chokepoint: wire format, retries and timeouts, 429 waits, 302 moves, secrets, limiter."""

from __future__ import annotations

import json
import logging

import pytest
import requests
import requests_mock as rm

from airflow_provider_b24.client import USER_AGENT, Bitrix24Client, ClientConfig, WebhookAuth
from airflow_provider_b24.exceptions import (
    Bitrix24ConfigError,
    Bitrix24OperationTimeLimit,
    Bitrix24Overloaded,
    Bitrix24RateLimited,
    Bitrix24TransportError,
)
from tests.unit.client.b24_client_helpers import BASE, CODE, PORTAL, err, ok


def test_post_json_with_headers(client) -> None:
    with rm.Mocker() as mock:
        route = mock.post(BASE + "crm.activity.get", **ok({"ID": "999"}))
        assert client.call("crm.activity.get", {"id": 999}) == {"ID": "999"}
    request = route.last_request
    assert request.method == "POST"
    assert json.loads(request.body) == {"id": 999}
    assert request.headers["User-Agent"] == USER_AGENT
    assert USER_AGENT.startswith("airflow-provider-b24/")
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Content-Type"].startswith("application/json")


def test_call_envelope_returns_whole_body(client) -> None:
    with rm.Mocker() as mock:
        mock.post(BASE + "crm.activity.list", **ok([{"ID": "1"}], total=120, next=50))
        body = client.call_envelope("crm.activity.list", {"start": 0})
    assert body["total"] == 120
    assert body["next"] == 50


def test_one_session_keep_alive(client) -> None:
    session = client.session
    with rm.Mocker() as mock:
        mock.post(BASE + "profile", **ok({"ID": "1"}))
        client.call("profile")
        client.call("profile")
    assert client.session is session


@pytest.mark.parametrize("bad", ["", "crm.activity.get?x=1", "a/b", "   "])
def test_bad_method_names_are_refused_before_sending(client, bad) -> None:
    with pytest.raises(Bitrix24ConfigError):
        client.call(bad)


# ---------------------------------------------------------------- timeouts and connection errors
def test_read_timeout_is_retried_for_reads(client) -> None:
    with rm.Mocker() as mock:
        route = mock.post(BASE + "crm.activity.list", [{"exc": requests.exceptions.ReadTimeout}, ok([])])
        assert client.call("crm.activity.list") == []
    assert route.call_count == 2


@pytest.mark.parametrize("method", ["crm.activity.add", "crm.activity.update", "crm.activity.delete", "x.do"])
def test_write_is_never_resent_after_read_timeout(client, method) -> None:
    with rm.Mocker() as mock:
        route = mock.post(BASE + method, [{"exc": requests.exceptions.ReadTimeout}, ok(1)])
        with pytest.raises(Bitrix24TransportError) as info:
            client.call(method, {"fields": {"SUBJECT": "x"}})
    assert route.call_count == 1
    assert info.value.code == "READ_TIMEOUT"
    assert "may have been executed" in str(info.value)


def test_write_is_resent_after_connect_timeout(client) -> None:
    with rm.Mocker() as mock:
        route = mock.post(BASE + "crm.activity.add", [{"exc": requests.exceptions.ConnectTimeout}, ok(7)])
        assert client.call("crm.activity.add", {"fields": {}}) == 7
    assert route.call_count == 2


def test_connection_error_mid_request_retried_only_for_reads(client) -> None:
    with rm.Mocker() as mock:
        reads = mock.post(
            BASE + "crm.activity.get", [{"exc": requests.exceptions.ChunkedEncodingError}, ok({})]
        )
        writes = mock.post(BASE + "crm.activity.add", [{"exc": requests.exceptions.ConnectionError}, ok(1)])
        client.call("crm.activity.get", {"id": 1})
        with pytest.raises(Bitrix24TransportError):
            client.call("crm.activity.add", {"fields": {}})
    assert reads.call_count == 2
    assert writes.call_count == 1


def test_batch_of_reads_retried_after_timeout_but_not_with_a_write(client) -> None:
    with rm.Mocker() as mock:
        route = mock.post(
            BASE + "batch",
            [
                {"exc": requests.exceptions.ReadTimeout},
                ok({"result": {"a": {"ID": "1"}}, "result_error": []}),
                {"exc": requests.exceptions.ReadTimeout},
            ],
        )
        assert client.batch({"a": ("crm.activity.get", {"id": 1})}).results == {"a": {"ID": "1"}}
        with pytest.raises(Bitrix24TransportError):
            client.batch({"a": ("crm.activity.get", {"id": 1}), "b": ("crm.activity.delete", {"id": 2})})
    assert route.call_count == 3


def test_tls_error_not_retried(client) -> None:
    with rm.Mocker() as mock:
        route = mock.post(BASE + "profile", exc=requests.exceptions.SSLError(f"bad cert for {BASE}"))
        with pytest.raises(Bitrix24TransportError) as info:
            client.call("profile")
    assert route.call_count == 1
    assert "verify" in str(info.value)
    assert CODE not in str(info.value)


def test_transport_error_text_never_contains_the_url_secret(make_client) -> None:
    client = make_client(max_retries=0)
    with rm.Mocker() as mock:
        mock.post(
            BASE + "profile", exc=requests.exceptions.ConnectionError(f"Max retries with url: {BASE}profile")
        )
        with pytest.raises(Bitrix24TransportError) as info:
            client.call("profile")
    assert CODE not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


# ---------------------------------------------------------------- 503 / 429 / overload
def test_query_limit_marks_the_shared_bucket_full(client) -> None:
    with rm.Mocker() as mock:
        mock.post(BASE + "profile", [err(503, "QUERY_LIMIT_EXCEEDED", "Too many requests"), ok({})])
        client.call("profile")
    assert client.stats.rejected_503 == 1
    assert client._bucket.level > client.config.burst - 2  # filled, drained during the backoff


def test_query_limit_gives_up_after_max_retries(make_client) -> None:
    client = make_client(max_retries=2)
    with rm.Mocker() as mock:
        route = mock.post(BASE + "profile", **err(503, "QUERY_LIMIT_EXCEEDED", "Too many requests"))
        with pytest.raises(Bitrix24RateLimited):
            client.call("profile")
    assert route.call_count == 3
    assert client.stats.rejected_503 == 3


def test_overload_is_not_retried(client) -> None:
    with rm.Mocker() as mock:
        route = mock.post(
            BASE + "profile", **err(503, "OVERLOAD_LIMIT", "REST API is blocked due to overload")
        )
        with pytest.raises(Bitrix24Overloaded):
            client.call("profile")
    assert route.call_count == 1


def test_operation_time_limit_waits_until_reset(client, clock) -> None:
    reset_at = clock.now + 20
    blocked = err(429, "OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.")
    blocked["json"]["time"] = {"operating": 481, "operating_reset_at": reset_at}
    with rm.Mocker() as mock:
        route = mock.post(BASE + "crm.activity.list", [blocked, ok([])])
        assert client.call("crm.activity.list") == []
    assert route.call_count == 2
    assert clock.now >= reset_at
    assert client.stats.operating_waits == 1
    assert client.stats.retries == 0


def test_operation_time_limit_raises_when_reset_is_far(client, clock) -> None:
    reset_at = clock.now + 300
    blocked = err(429, "OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.")
    blocked["json"]["time"] = {"operating_reset_at": reset_at}
    with rm.Mocker() as mock:
        route = mock.post(BASE + "crm.activity.list", [blocked, ok([])])
        with pytest.raises(Bitrix24OperationTimeLimit) as info:
            client.call("crm.activity.list")
    assert route.call_count == 1
    assert info.value.reset_at == reset_at
    assert info.value.http_status == 429
    assert clock.sleeps == []


def test_operation_time_limit_without_reset_time_raises_with_an_estimate(client, clock) -> None:
    with rm.Mocker() as mock:
        mock.post(BASE + "crm.activity.list", **err(429, "OPERATION_TIME_LIMIT", "blocked"))
        with pytest.raises(Bitrix24OperationTimeLimit) as info:
            client.call("crm.activity.list")
    assert info.value.reset_at == pytest.approx(clock.now + 600)


def test_operation_time_limit_with_iso_reset_time(client, clock) -> None:
    import datetime as dt

    reset = dt.datetime.fromtimestamp(clock.now + 10, tz=dt.UTC).isoformat()
    blocked = err(429, "OPERATION_TIME_LIMIT", "blocked")
    blocked["json"]["time"] = {"operating_reset_at": reset}
    with rm.Mocker() as mock:
        mock.post(BASE + "crm.activity.list", [blocked, ok([])])
        client.call("crm.activity.list")
    assert client.stats.operating_waits == 1


def test_operating_budget_slows_down_then_pauses(make_client, clock) -> None:
    client = make_client(operating_max_wait=120)
    near = ok([])
    near["json"]["time"] = {"operating": 400.0, "operating_reset_at": clock.now + 100}
    full = ok([])
    full["json"]["time"] = {"operating": 478.0, "operating_reset_at": clock.now + 100}
    with rm.Mocker() as mock:
        mock.post(BASE + "crm.activity.list", [near, full, ok([])])
        client.call("crm.activity.list")  # learns 400 s of 480 (> 80 %)
        client.call("crm.activity.list")  # slowed: 1 % of the time left
        assert clock.sleeps[-1] == pytest.approx(1.0, abs=0.01)
        client.call("crm.activity.list")  # at the budget: wait for the reset
    assert clock.sleeps[-1] >= 95
    assert client.stats.limiter_wait_s >= 96


def test_operating_budget_pause_too_long_raises_before_sending(make_client, clock) -> None:
    client = make_client(operating_max_wait=10)
    full = ok([])
    full["json"]["time"] = {"operating": 479.0, "operating_reset_at": clock.now + 300}
    with rm.Mocker() as mock:
        route = mock.post(BASE + "crm.activity.list", [full, ok([])])
        client.call("crm.activity.list")
        with pytest.raises(Bitrix24OperationTimeLimit):
            client.call("crm.activity.list")
    assert route.call_count == 1


def test_on_premise_without_operating_fields_never_waits(client, clock) -> None:
    with rm.Mocker() as mock:
        mock.post(BASE + "crm.activity.list", **ok([]))
        for _ in range(10):
            client.call("crm.activity.list")
    assert clock.sleeps == []


# ---------------------------------------------------------------- limiter
def test_leaky_bucket_paces_after_the_burst(make_client, clock) -> None:
    client = make_client(rate_limit=2.0, burst=6)  # one request of headroom: 5 go at once
    with rm.Mocker() as mock:
        mock.post(BASE + "profile", **ok({}))
        for _ in range(5):
            client.call("profile")
        assert clock.sleeps == []
        for _ in range(4):
            client.call("profile")
    assert clock.sleeps == [pytest.approx(0.5)] * 4
    assert client.stats.limiter_wait_s == pytest.approx(2.0)


def test_bucket_is_shared_by_clients_of_one_portal(make_client, clock) -> None:
    first, second = make_client(rate_limit=1.0, burst=3), make_client(rate_limit=1.0, burst=3)
    other = make_client(base_url="https://other.example.com", rate_limit=1.0, burst=3)
    assert first._bucket is second._bucket
    assert first._bucket is not other._bucket
    with rm.Mocker() as mock:
        mock.post(BASE + "profile", **ok({}))
        first.call("profile")
        second.call("profile")
        assert clock.sleeps == []
        first.call("profile")
    assert clock.sleeps == [pytest.approx(1.0)]


def test_headroom_scales_with_the_burst(registry) -> None:
    bucket = registry.bucket("h", 2.0, 50)
    waits = [bucket.reserve(0.0) for _ in range(50)]
    assert waits.count(0.0) == 48  # 4 % of 50 kept free for network jitter
    assert waits[-1] == pytest.approx(1.0)


def test_rate_limit_zero_turns_the_limiter_off(make_client, clock) -> None:
    client = make_client(rate_limit=0, burst=1)
    with rm.Mocker() as mock:
        mock.post(BASE + "profile", **ok({}))
        for _ in range(20):
            client.call("profile")
    assert clock.sleeps == []


# ---------------------------------------------------------------- 302
def test_redirect_repeats_the_post_at_the_new_portal(client, caplog) -> None:
    new = "https://moved.example.com"
    with rm.Mocker() as mock:
        old_route = mock.post(
            BASE + "crm.activity.get",
            status_code=302,
            headers={"Location": f"{new}/rest/1/{CODE}/crm.activity.get"},
        )
        new_route = mock.post(f"{new}/rest/1/{CODE}/crm.activity.get", **ok({"ID": "5"}))
        with caplog.at_level(logging.DEBUG):
            assert client.call("crm.activity.get", {"id": 5}) == {"ID": "5"}
    assert old_route.call_count == 1
    assert new_route.last_request.method == "POST"
    assert json.loads(new_route.last_request.body) == {"id": 5}
    assert client.base_url == new
    assert client.stats.redirects == 1
    assert "moved.example.com" in caplog.text
    assert CODE not in caplog.text


def test_redirect_to_plain_http_is_refused(client) -> None:
    with rm.Mocker() as mock:
        mock.post(BASE + "profile", status_code=302, headers={"Location": "http://evil.example.com/"})
        with pytest.raises(Bitrix24TransportError):
            client.call("profile")


def test_redirect_loop_stops(client) -> None:
    with rm.Mocker() as mock:
        mock.post(BASE + "profile", status_code=302, headers={"Location": f"{PORTAL}/x"})
        with pytest.raises(Bitrix24TransportError, match="too many"):
            client.call("profile")


# ---------------------------------------------------------------- secrets and logging
def test_no_secret_in_debug_logs_errors_or_reprs(make_client, caplog) -> None:
    client = make_client(max_retries=1)
    with caplog.at_level(logging.DEBUG), rm.Mocker() as mock:
        mock.post(BASE + "crm.activity.get", [err(500, "INTERNAL_SERVER_ERROR", "boom"), ok({"ID": "1"})])
        mock.post(BASE + "crm.activity.delete", **err(400, "", "Not found"))
        client.call("crm.activity.get", {"id": 1})
        with pytest.raises(Exception) as info:
            client.call("crm.activity.delete", {"id": 1})
    assert CODE not in caplog.text
    assert "/rest/1/***/crm.activity.get" in caplog.text
    assert CODE not in str(info.value) and CODE not in repr(info.value)
    assert CODE not in repr(client) and CODE not in repr(client.auth)
    assert any(r.levelno == logging.WARNING and "retry 1" in r.getMessage() for r in caplog.records)
    info_lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("crm.activity.get" in line and "2 request(s)" in line for line in info_lines)


def test_insecure_http_warns(clock, registry, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        Bitrix24Client(
            "http://onprem.local", WebhookAuth("1", CODE), ClientConfig(), clock=clock, limiters=registry
        )
    assert "plain http" in caplog.text


def test_context_manager_closes_session(make_client) -> None:
    with make_client():
        pass
    assert True  # requests keeps adapters; close() must simply not fail
