"""Credentials of the emulated portal: one incoming webhook and one OAuth app with rotating tokens.

Access tokens expire after ``access_token_lifetime`` seconds (401 ``expired_token``); unknown ones get
401 ``invalid_token``. Every refresh issues a new refresh token and revokes the old one (a reused
old token gets ``invalid_grant``). Tokens are deterministic for a given seed.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

__all__ = ["AuthResult", "OAuthState", "TokenStatus"]


class TokenStatus(Enum):
    """Outcome of checking an access token."""

    VALID = "valid"
    EXPIRED = "expired"
    INVALID = "invalid"


@dataclass
class AuthResult:
    """Who is calling: the credential key used for operating-time accounting and the scopes."""

    credential: str
    user_id: str
    scopes: tuple[str, ...]
    kind: str  # "webhook" | "oauth"


@dataclass
class OAuthState:
    """Tokens of the OAuth app; thread-safe."""

    client_id: str
    client_secret: str
    user_id: str
    scopes: tuple[str, ...]
    lifetime: float
    clock: Callable[[], float]
    seed: int = 1
    access: dict[str, float] = field(default_factory=dict)  # token -> expires at
    refresh: set[str] = field(default_factory=set)
    revoked: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"oauth-{self.seed}")
        self._lock = threading.Lock()
        self.initial_access, self.initial_refresh = self._issue()

    def _token(self) -> str:
        return "%064x" % self._rng.getrandbits(256)  # noqa: UP031

    def _issue(self) -> tuple[str, str]:
        access, refresh = self._token(), self._token()
        self.access[access] = self.clock() + self.lifetime
        self.refresh.add(refresh)
        return access, refresh

    def check(self, token: str) -> TokenStatus:
        """Validate an access token."""
        with self._lock:
            expires = self.access.get(token)
        if expires is None:
            return TokenStatus.INVALID
        return TokenStatus.VALID if self.clock() < expires else TokenStatus.EXPIRED

    def rotate(self, refresh_token: str) -> tuple[str, str, int] | None:
        """Exchange a refresh token: (access, refresh, expires_at), or None if it is not valid."""
        with self._lock:
            if refresh_token not in self.refresh:
                return None
            self.refresh.discard(refresh_token)
            self.revoked.add(refresh_token)
            access, refresh = self._issue()
            return access, refresh, int(self.access[access])

    def expire_all(self) -> None:
        """Make every issued access token expired now."""
        with self._lock:
            now = self.clock()
            for token in self.access:
                self.access[token] = min(self.access[token], now - 1)

    def revoke_refresh_tokens(self) -> None:
        """Invalidate every refresh token (the next refresh gets ``invalid_grant``)."""
        with self._lock:
            self.revoked.update(self.refresh)
            self.refresh.clear()

    def issue(self) -> tuple[str, str]:
        """A fresh (access, refresh) pair, as after a new authorization."""
        with self._lock:
            return self._issue()
