"""AirflowVariableTokenStore across machines: a process that loses a refresh race adopts the winner's pair.

Two "machines" are two stores with different lock files (no shared lock) and one Variable (the
metadata DB), faked as a dict behind ``airflow.sdk.Variable``. The authorization server is
requests-mock: refresh tokens are single-use, a spent one gets ``invalid_grant``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
import requests
import requests_mock

from airflow_provider_b24.client.auth import OAuthAuth, TokenPair
from airflow_provider_b24.client.errors import Bitrix24AuthError
from airflow_provider_b24.hooks.token_store import AirflowVariableTokenStore, variable_name

TOKEN_URL = "https://oauth.example.com/oauth/token/"
P0 = TokenPair("access-0", "refresh-0")
P1 = TokenPair("access-1", "refresh-1")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def variables() -> Iterator[dict[str, str]]:
    """The metadata DB's Variables, as every process of a deployment sees them."""
    stored: dict[str, str] = {}
    with (
        mock.patch(
            "airflow.sdk.Variable.get", side_effect=lambda key, default=None: stored.get(key, default)
        ),
        mock.patch(
            "airflow.sdk.Variable.set", side_effect=lambda key, value, **kw: stored.update({key: value})
        ),
    ):
        yield stored


def machine_store(conn_id: str, clock: FakeClock, tmp_path: Any, name: str) -> AirflowVariableTokenStore:
    store = AirflowVariableTokenStore(
        conn_id, P0, adopt_timeout=5.0, poll_interval=0.5, clock=clock, sleep=clock.sleep
    )
    store.lock_path = str(tmp_path / f"{name}.lock")  # another machine: another temp directory
    return store


def test_wait_for_newer_adopts_the_pair_saved_by_another_process(variables: dict[str, str]) -> None:
    clock = FakeClock()
    store = AirflowVariableTokenStore(
        "b24", P0, adopt_timeout=5, poll_interval=0.5, clock=clock, sleep=clock.sleep
    )
    reads = iter([None, json.dumps(P0.to_dict()), json.dumps(P1.to_dict())])

    def get(key: str, default: Any = None) -> Any:
        return next(reads)

    with mock.patch("airflow.sdk.Variable.get", side_effect=get):
        pair = store.wait_for_newer(P0)
    assert pair is not None and pair.refresh_token == "refresh-1" and pair.access_token == "access-1"
    assert clock.sleeps == [0.5, 0.5]  # two re-reads before the winner's pair appeared
    assert store.load() is not None


def test_wait_for_newer_gives_up_after_the_timeout(variables: dict[str, str]) -> None:
    clock = FakeClock()
    store = AirflowVariableTokenStore(
        "b24", P0, adopt_timeout=5, poll_interval=0.5, clock=clock, sleep=clock.sleep
    )
    variables[variable_name("b24")] = json.dumps(P0.to_dict())  # nobody saved a newer pair
    assert store.wait_for_newer(P0) is None
    assert clock.now == pytest.approx(5.0)
    assert len(clock.sleeps) == 10


def _token_server(m: requests_mock.Mocker, on_post: Any) -> None:
    m.post(TOKEN_URL, json=on_post)


def test_lost_refresh_race_across_machines_adopts_the_winners_pair(
    variables: dict[str, str], tmp_path: Any
) -> None:
    """Worker B (another host) spends refresh-0 just after worker A did: B uses A's pair, no failure."""
    clock = FakeClock()
    store_b = machine_store("b24", clock, tmp_path, "machine-b")
    auth_b = OAuthAuth(
        client_id="app", client_secret="s3cr3t", store=store_b, oauth_server="https://oauth.example.com"
    )
    assert auth_b.access_token() == "access-0"
    spent: set[str] = set()

    def token_endpoint(request: Any, context: Any) -> dict[str, Any]:
        refresh = dict(kv.split("=") for kv in request.text.split("&"))["refresh_token"]
        # Worker A, on another machine, won the race for refresh-0 a moment ago and saved its pair.
        spent.add("refresh-0")
        variables[variable_name("b24")] = json.dumps(P1.to_dict())
        if refresh in spent:
            context.status_code = 400
            return {"error": "invalid_grant", "error_description": "Invalid refresh token"}
        raise AssertionError(f"unexpected refresh token {refresh}")

    with requests_mock.Mocker() as m, requests.Session() as session:
        _token_server(m, token_endpoint)
        refreshed = auth_b.refresh(session, stale_access_token="access-0", timeout=(1, 1), verify=True)
    assert refreshed is False  # no new pair of its own: it adopted A's
    assert auth_b.access_token() == "access-1"
    assert auth_b.current_pair() == P1
    assert m.call_count == 1


def test_lost_refresh_race_without_the_winners_pair_still_fails(
    variables: dict[str, str], tmp_path: Any
) -> None:
    """The limit: if the winner never saves its pair, invalid_grant is raised after the bounded wait."""
    clock = FakeClock()
    store = machine_store("b24", clock, tmp_path, "machine-b")
    auth = OAuthAuth(
        client_id="app", client_secret="s3cr3t", store=store, oauth_server="https://oauth.example.com"
    )
    with requests_mock.Mocker() as m, requests.Session() as session:
        m.post(TOKEN_URL, status_code=400, json={"error": "invalid_grant", "error_description": "spent"})
        with pytest.raises(Bitrix24AuthError, match="invalid_grant") as info:
            auth.refresh(session, stale_access_token="access-0", timeout=(1, 1), verify=True)
    assert "s3cr3t" not in str(info.value) and "refresh-0" not in str(info.value)
    assert clock.now == pytest.approx(5.0)


def test_other_auth_errors_are_not_waited_for(variables: dict[str, str], tmp_path: Any) -> None:
    clock = FakeClock()
    store = machine_store("b24", clock, tmp_path, "machine-b")
    auth = OAuthAuth(
        client_id="app", client_secret="s3cr3t", store=store, oauth_server="https://oauth.example.com"
    )
    with requests_mock.Mocker() as m, requests.Session() as session:
        m.post(
            TOKEN_URL, status_code=401, json={"error": "invalid_client", "error_description": "bad client"}
        )
        with pytest.raises(Bitrix24AuthError):
            auth.refresh(session, stale_access_token="access-0", timeout=(1, 1), verify=True)
    assert clock.sleeps == []


def test_winner_saves_its_pair_for_the_other_machines(variables: dict[str, str], tmp_path: Any) -> None:
    clock = FakeClock()
    store = machine_store("b24", clock, tmp_path, "machine-a")
    auth = OAuthAuth(
        client_id="app", client_secret="s3cr3t", store=store, oauth_server="https://oauth.example.com"
    )
    with requests_mock.Mocker() as m, requests.Session() as session:
        m.post(TOKEN_URL, json={"access_token": "access-1", "refresh_token": "refresh-1", "expires_in": 3600})
        assert auth.refresh(session, stale_access_token="access-0", timeout=(1, 1), verify=True) is True
    saved = json.loads(variables[variable_name("b24")])
    assert saved["refresh_token"] == "refresh-1" and saved["access_token"] == "access-1"


def test_no_variable_api_means_no_wait() -> None:
    """A plain script (no Variable API) has no shared store: invalid_grant is reported at once."""
    clock = FakeClock()
    store = AirflowVariableTokenStore(
        "b24", P0, adopt_timeout=5, poll_interval=0.5, clock=clock, sleep=clock.sleep
    )
    with mock.patch("airflow.sdk.Variable.get", side_effect=ImportError("no supervisor")):
        assert store.wait_for_newer(P0) is None
    assert clock.sleeps == []
