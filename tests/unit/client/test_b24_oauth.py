"""OAuth: refresh on 401 expired_token, rotation into the store, coalescing, re-reading the store."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests_mock as rm

from airflow_provider_b24.client import MemoryTokenStore, OAuthAuth, TokenPair
from airflow_provider_b24.exceptions import Bitrix24AuthError
from tests.unit.client.b24_client_helpers import PORTAL, err, ok

TOKEN_URL = "https://oauth.example.com/oauth/token/"
CLIENT_SECRET = "clientSecretValue"


class TokenServer:
    """Issues rotating pairs; an old refresh token is dead once used."""

    def __init__(self) -> None:
        self.n = 0
        self.live_refresh = "refresh-0"
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, request: Any, context: Any) -> Any:
        with self.lock:
            self.calls += 1
            form = {k: v[0] for k, v in parse_qs(request.body).items()}
            assert request.url == TOKEN_URL  # secrets only in the body
            assert form["client_secret"] == CLIENT_SECRET
            if form["refresh_token"] != self.live_refresh:
                context.status_code = 400
                return {"error": "invalid_grant", "error_description": "Invalid grant"}
            self.n += 1
            self.live_refresh = f"refresh-{self.n}"
            return {
                "access_token": f"access-{self.n}",
                "refresh_token": self.live_refresh,
                "expires": 1_900_000_000,
                "expires_in": 3600,
                "member_id": "m1",
                "client_endpoint": f"{PORTAL}/rest/",
            }


def api(live: dict[str, str]) -> Any:
    def handler(request: Any, context: Any) -> Any:
        token = json.loads(request.body).get("auth")
        if token != live["access"]:
            context.status_code = 401
            return {"error": "expired_token", "error_description": "The access token provided has expired."}
        return {"result": {"ID": "1"}}

    return handler


def make_auth(store: Any) -> OAuthAuth:
    return OAuthAuth(
        client_id="local.app",
        client_secret=CLIENT_SECRET,
        store=store,
        oauth_server="https://oauth.example.com/",
    )


def test_body_auth_and_url(make_client) -> None:
    store = MemoryTokenStore(TokenPair("access-0", "refresh-0"))
    client = make_client(auth=make_auth(store))
    with rm.Mocker() as mock:
        route = mock.post(f"{PORTAL}/rest/profile", **ok({"ID": "1"}))
        client.call("profile")
    assert json.loads(route.last_request.body) == {"auth": "access-0"}


def test_refresh_on_expired_token_rotates_and_saves(make_client, caplog) -> None:
    server = TokenServer()
    store = MemoryTokenStore(TokenPair("stale", "refresh-0"))
    client = make_client(auth=make_auth(store))
    with caplog.at_level(logging.DEBUG), rm.Mocker() as mock:
        mock.post(TOKEN_URL, json=server)
        route = mock.post(f"{PORTAL}/rest/crm.activity.get", json=api({"access": "access-1"}))
        assert client.call("crm.activity.get", {"id": 1}) == {"ID": "1"}
    assert route.call_count == 2
    assert server.calls == 1
    saved = store.load()
    assert saved is not None
    assert (saved.access_token, saved.refresh_token, saved.member_id) == ("access-1", "refresh-1", "m1")
    assert client.stats.refreshes == 1
    for secret in ("access-1", "refresh-1", "refresh-0", CLIENT_SECRET, "stale"):
        assert secret not in caplog.text
    assert "access-1" not in repr(saved) and "refresh-1" not in repr(saved)


def test_refresh_only_once_per_call(make_client) -> None:
    server = TokenServer()
    client = make_client(auth=make_auth(MemoryTokenStore(TokenPair("stale", "refresh-0"))))
    with rm.Mocker() as mock:
        mock.post(TOKEN_URL, json=server)
        route = mock.post(f"{PORTAL}/rest/profile", **err(401, "expired_token", "expired"))
        with pytest.raises(Bitrix24AuthError):
            client.call("profile")
    assert route.call_count == 2
    assert server.calls == 1


def test_invalid_grant_says_reauthorise(make_client) -> None:
    server = TokenServer()
    server.live_refresh = "something-else"
    client = make_client(auth=make_auth(MemoryTokenStore(TokenPair("stale", "refresh-0"))))
    with rm.Mocker() as mock:
        mock.post(TOKEN_URL, json=server)
        mock.post(f"{PORTAL}/rest/profile", **err(401, "expired_token", "expired"))
        with pytest.raises(Bitrix24AuthError) as info:
            client.call("profile")
    assert info.value.code == "invalid_grant"
    assert "re-authorised" in str(info.value)
    assert "refresh-0" not in str(info.value)


def test_invalid_token_is_not_refreshed(make_client) -> None:
    server = TokenServer()
    client = make_client(auth=make_auth(MemoryTokenStore(TokenPair("garbage", "refresh-0"))))
    with rm.Mocker() as mock:
        mock.post(TOKEN_URL, json=server)
        mock.post(f"{PORTAL}/rest/profile", **err(401, "invalid_token", "Unable to get application by token"))
        with pytest.raises(Bitrix24AuthError):
            client.call("profile")
    assert server.calls == 0


def test_missing_access_token_refreshes_first(make_client) -> None:
    server = TokenServer()
    store = MemoryTokenStore(TokenPair("", "refresh-0"))
    client = make_client(auth=make_auth(store))
    with rm.Mocker() as mock:
        mock.post(TOKEN_URL, json=server)
        route = mock.post(f"{PORTAL}/rest/profile", json=api({"access": "access-1"}))
        client.call("profile")
    assert route.call_count == 1
    assert server.calls == 1


def test_store_is_reread_before_refreshing(make_client) -> None:
    """Another worker rotated the pair: use its tokens instead of spending a dead refresh token."""
    server = TokenServer()
    store = MemoryTokenStore(TokenPair("stale", "refresh-0"))
    client = make_client(auth=make_auth(store))
    with rm.Mocker() as mock:
        mock.post(TOKEN_URL, json=server)
        route = mock.post(f"{PORTAL}/rest/profile", json=api({"access": "access-1"}))
        client.auth.current_pair()  # this client loaded the old pair
        # ... meanwhile another worker refreshed and saved:
        server.n, server.live_refresh = 1, "refresh-1"
        store.save(TokenPair("access-1", "refresh-1"))
        assert client.call("profile") == {"ID": "1"}
    assert server.calls == 0
    assert route.call_count == 2


def test_concurrent_expiries_coalesce_into_one_refresh(make_client) -> None:
    server = TokenServer()
    store = MemoryTokenStore(TokenPair("stale", "refresh-0"))
    auth = make_auth(store)
    clients = [make_client(auth=auth) for _ in range(8)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(clients))

    def work(client: Any) -> None:
        try:
            barrier.wait()
            client.call("profile")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with rm.Mocker() as mock:
        mock.post(TOKEN_URL, json=server)
        mock.post(f"{PORTAL}/rest/profile", json=api({"access": "access-1"}))
        threads = [threading.Thread(target=work, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert errors == []
    assert server.calls == 1


def test_separate_auth_objects_sharing_a_store_also_coalesce(make_client) -> None:
    server = TokenServer()
    store = MemoryTokenStore(TokenPair("stale", "refresh-0"))
    clients = [make_client(auth=make_auth(store)) for _ in range(4)]
    barrier = threading.Barrier(len(clients))
    with rm.Mocker() as mock:
        mock.post(TOKEN_URL, json=server)
        mock.post(f"{PORTAL}/rest/profile", json=api({"access": "access-1"}))

        def work(client: Any) -> None:
            barrier.wait()
            client.call("profile")

        threads = [threading.Thread(target=work, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert server.calls == 1


def test_oauth_server_not_json(make_client) -> None:
    client = make_client(auth=make_auth(MemoryTokenStore(TokenPair("stale", "refresh-0"))))
    with rm.Mocker() as mock:
        mock.post(TOKEN_URL, status_code=502, text="<html>bad gateway</html>")
        mock.post(f"{PORTAL}/rest/profile", **err(401, "expired_token", "expired"))
        with pytest.raises(Exception) as info:
            client.call("profile")
    assert CLIENT_SECRET not in str(info.value)


def test_token_pair_dict_round_trip() -> None:
    pair = TokenPair("a" * 10, "r" * 10, expires=5.0, member_id="m", client_endpoint="https://x/rest/")
    assert TokenPair.from_dict(pair.to_dict()) == pair
    assert "aaaa" not in repr(pair)
