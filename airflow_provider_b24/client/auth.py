"""Authentication strategies: incoming webhook and OAuth 2.0 with rotating refresh tokens.

* :class:`WebhookAuth` puts ``/rest/<user_id>/<code>/`` in the URL path.
* :class:`OAuthAuth` calls ``/rest/<method>`` with ``auth`` in the JSON body and refreshes the access
  token only when the portal answers 401 ``expired_token`` (never on a timer: the docs warn that
  timed refreshes can get an app blocked). Refresh tokens rotate - each refresh returns a new one and
  the old one dies - so the new pair goes to a :class:`TokenStore` at once.

Refresh safety:

* within one process, a lock per token store coalesces refreshes: a thread that waited for the lock
  and finds that another thread already replaced the expired access token just uses the new one;
* right before refreshing, the store is re-read, so a pair rotated by another worker (and saved to a
  shared store such as an Airflow Variable) is used instead of burning a dead refresh token;
* a store may offer ``lock()`` (a context manager) to serialise refreshes across processes too;
  the hook's store uses a file lock, which covers workers on one machine;
* a store may offer ``wait_for_newer(spent_pair)``: after ``invalid_grant`` (another process, maybe
  on another machine, spent the same refresh token first) it returns the pair that process saved,
  which is adopted instead of failing (the hook's Variable store waits a bounded time for it).
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

import requests

from airflow_provider_b24.client.errors import Bitrix24AuthError, Bitrix24TransportError, classify_error


@dataclass(frozen=True)
class WebhookAuth:
    """Incoming-webhook credentials: the user ID and the secret code of ``/rest/<user>/<code>/``."""

    user_id: str
    code: str = field(repr=False)

    def __repr__(self) -> str:
        return f"WebhookAuth(user_id={self.user_id!r}, code='***')"

    def method_path(self, method: str) -> str:
        """The URL path of a REST method call."""
        return f"/rest/{self.user_id}/{self.code}/{method}"

    def redacted_path(self, method: str) -> str:
        """The path with the code replaced by ``***`` (for logs)."""
        return f"/rest/{self.user_id}/***/{method}"

    @property
    def secrets(self) -> list[str]:
        return [self.code]


@dataclass(frozen=True)
class TokenPair:
    """An OAuth token pair as the authorization server returns it (tokens never in the repr)."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires: float | None = None
    member_id: str | None = None
    client_endpoint: str | None = None
    scope: str | None = None

    def __repr__(self) -> str:
        return (
            f"TokenPair(access_token='***', refresh_token='***', expires={self.expires!r}, "
            f"member_id={self.member_id!r}, client_endpoint={self.client_endpoint!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-plain form stored by token stores."""
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires": self.expires,
            "member_id": self.member_id,
            "client_endpoint": self.client_endpoint,
            "scope": self.scope,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenPair:
        """Inverse of :meth:`to_dict`; also accepts an authorization-server response."""
        expires = data.get("expires")
        if expires in (None, "") and data.get("expires_in") not in (None, ""):
            expires = time.time() + float(data["expires_in"])
        return cls(
            access_token=str(data.get("access_token") or ""),
            refresh_token=str(data.get("refresh_token") or ""),
            expires=None if expires in (None, "") else float(expires),
            member_id=None if data.get("member_id") is None else str(data["member_id"]),
            client_endpoint=None if data.get("client_endpoint") is None else str(data["client_endpoint"]),
            scope=None if data.get("scope") is None else str(data["scope"]),
        )


@runtime_checkable
class TokenStore(Protocol):
    """Where the current token pair lives. ``save`` must persist before returning.

    A store may also define ``lock() -> ContextManager`` to serialise refreshes across processes.
    """

    def load(self) -> TokenPair | None: ...

    def save(self, pair: TokenPair) -> None: ...


class MemoryTokenStore:
    """A token store in process memory (plain scripts, tests). Thread-safe."""

    def __init__(self, pair: TokenPair | None = None) -> None:
        self._pair = pair
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryTokenStore(has_pair={self._pair is not None})"

    def load(self) -> TokenPair | None:
        with self._lock:
            return self._pair

    def save(self, pair: TokenPair) -> None:
        with self._lock:
            self._pair = pair


# One lock per store object, shared by every OAuthAuth using that store in this process.
_STORE_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_STORE_LOCKS_GUARD = threading.Lock()


def _lock_for(store: TokenStore) -> threading.Lock:
    with _STORE_LOCKS_GUARD:
        try:
            return _STORE_LOCKS.setdefault(store, threading.Lock())
        except TypeError:  # store not weak-referenceable: a lock per auth object instead
            return threading.Lock()


class OAuthAuth:
    """OAuth 2.0 credentials with reactive refresh (see the module docstring for the guarantees).

    :param client_id: the application's client ID.
    :param client_secret: the application's secret; sent only to ``oauth_server``.
    :param store: where the token pair lives (seed it with the connection's tokens).
    :param oauth_server: the authorization server (``https://oauth.bitrix.info``; Russian region:
        ``https://oauth.bitrix24.tech``).
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        store: TokenStore,
        oauth_server: str = "https://oauth.bitrix.info",
    ) -> None:
        self.client_id = client_id
        self._client_secret = client_secret
        self.store = store
        self.oauth_server = oauth_server.rstrip("/")
        self._lock = _lock_for(store)
        self._pair: TokenPair | None = None
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"OAuthAuth(client_id={self.client_id!r}, oauth_server={self.oauth_server!r})"

    # ---------------------------------------------------------------- request side
    def method_path(self, method: str) -> str:
        return f"/rest/{method}"

    def redacted_path(self, method: str) -> str:
        return f"/rest/{method}"

    @property
    def secrets(self) -> list[str]:
        pair = self._pair
        values = [self._client_secret]
        if pair:
            values += [pair.access_token, pair.refresh_token]
        return [v for v in values if v]

    def current_pair(self) -> TokenPair | None:
        """The pair in use (loaded from the store on first use)."""
        if self._pair is None:
            self._pair = self.store.load()
        return self._pair

    def access_token(self) -> str | None:
        """The access token to send, or ``None`` when only a refresh token is known."""
        pair = self.current_pair()
        return pair.access_token if pair and pair.access_token else None

    # ---------------------------------------------------------------- refresh side
    def refresh(
        self,
        session: requests.Session,
        *,
        stale_access_token: str | None,
        timeout: tuple[float, float],
        verify: bool | str,
    ) -> bool:
        """Make sure a fresh access token is in use; return True when an HTTP refresh happened.

        If another thread (or, via the store, another worker) already replaced ``stale_access_token``,
        the newer pair is adopted without contacting the authorization server.
        """
        with self._lock, self._store_lock():
            mine = self._pair
            if mine and mine.access_token and mine.access_token != stale_access_token:
                return False  # another thread refreshed while we waited for the lock
            stored = self.store.load()
            if stored and stored.access_token and stored.access_token != stale_access_token:
                self._pair = stored  # another worker rotated the pair; its refresh token is the live one
                return False
            current = stored or mine
            if current is None or not current.refresh_token:
                raise Bitrix24AuthError(
                    "no OAuth refresh token is available; set refresh_token on the connection "
                    "(the app must be re-authorised to get one)",
                    code="NO_REFRESH_TOKEN",
                )
            try:
                new_pair = self._request_new_pair(session, current, timeout=timeout, verify=verify)
            except Bitrix24AuthError as exc:
                adopted = self._adopt_after_lost_race(exc, current)
                if adopted is None:
                    raise
                self._pair = adopted  # another process (another machine) won the refresh race
                return False
            self.store.save(new_pair)
            self._pair = new_pair
            self.refreshes += 1
            return True

    def _adopt_after_lost_race(self, error: Bitrix24AuthError, spent: TokenPair) -> TokenPair | None:
        """On ``invalid_grant``, the pair a store with ``wait_for_newer(spent)`` reports, if any."""
        wait_for_newer = getattr(self.store, "wait_for_newer", None)
        if (error.code or "").lower() != "invalid_grant" or not callable(wait_for_newer):
            return None
        pair = wait_for_newer(spent)
        if pair is None or not pair.refresh_token or pair.refresh_token == spent.refresh_token:
            return None
        return pair

    def _store_lock(self) -> AbstractContextManager[Any]:
        lock = getattr(self.store, "lock", None)
        return lock() if callable(lock) else contextlib.nullcontext()

    def _request_new_pair(
        self,
        session: requests.Session,
        current: TokenPair,
        *,
        timeout: tuple[float, float],
        verify: bool | str,
    ) -> TokenPair:
        url = f"{self.oauth_server}/oauth/token/"
        form = {
            "grant_type": "refresh_token",
            "client_id": self.client_id,
            "client_secret": self._client_secret,
            "refresh_token": current.refresh_token,
        }
        try:
            response = session.post(url, data=form, timeout=timeout, verify=verify, allow_redirects=False)
        except requests.RequestException as exc:
            raise Bitrix24TransportError(
                f"could not reach the OAuth server {self.oauth_server}: {type(exc).__name__}",
                code="OAUTH_TRANSPORT",
                method="oauth/token",
                retryable=False,
            ) from None
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise Bitrix24TransportError(
                f"the OAuth server answered HTTP {response.status_code} without a JSON body",
                http_status=response.status_code,
                method="oauth/token",
            )
        if data.get("error") or not data.get("access_token"):
            code = str(data.get("error") or "")
            description = str(data.get("error_description") or "no access_token in the answer")
            if code.lower() == "invalid_grant":
                raise Bitrix24AuthError(
                    "the OAuth refresh token was rejected (invalid_grant: expired, revoked or already "
                    "used); the Bitrix24 app must be re-authorised and the connection's refresh_token "
                    "replaced",
                    code=code,
                    http_status=response.status_code,
                    method="oauth/token",
                )
            error = classify_error(code, description, http_status=response.status_code, method="oauth/token")
            if not isinstance(error, Bitrix24AuthError):
                error = Bitrix24AuthError(
                    f"OAuth refresh failed: {error.description}",
                    code=code,
                    http_status=response.status_code,
                    method="oauth/token",
                )
            raise error
        pair = TokenPair.from_dict(data)
        if not pair.refresh_token:
            pair = replace(pair, refresh_token=current.refresh_token)
        return pair


@contextlib.contextmanager
def no_lock() -> Iterator[None]:
    """A do-nothing lock (for stores that need no cross-process serialisation)."""
    yield


Auth = WebhookAuth | OAuthAuth

__all__ = ["Auth", "MemoryTokenStore", "OAuthAuth", "TokenPair", "TokenStore", "WebhookAuth", "no_lock"]
