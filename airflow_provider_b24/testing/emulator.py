"""``Bitrix24Emulator``: start the emulated portal on a loopback port (HTTPS by default).

Example::

    from airflow_provider_b24.testing import Bitrix24Emulator

    with Bitrix24Emulator(activities=1000, seed=1) as emu:
        requests.post(emu.webhook_url + "crm.activity.get", json={"id": 1}, verify=emu.ca_cert)
        emu.faults.add("query_limit", method="crm.activity.list", times=2)
        emu.store.complete(5)
        print(emu.stats["requests"])
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from airflow_provider_b24.testing.datagen import populate
from airflow_provider_b24.testing.faults import FaultSet
from airflow_provider_b24.testing.portal import Portal, PortalConfig
from airflow_provider_b24.testing.server import EmulatorServer, serve_in_thread
from airflow_provider_b24.testing.store import ActivityStore
from airflow_provider_b24.testing.tls import TlsFiles, acquire_tls_files, release_tls_files, server_context

__all__ = ["Bitrix24Emulator"]


class Bitrix24Emulator:
    """A Bitrix24 cloud portal on ``127.0.0.1`` for tests, demos and benchmarks.

    Args:
        activities: how many activities to generate (IDs ``1..N``; ignored when ``data`` is given).
        seed: seed for the data generator, the tokens and probabilistic faults.
        tls: serve HTTPS with a generated CA (``ca_cert``); plain HTTP when False.
        rate_limit: leaky-bucket drain in requests/s (None = no limit); ``burst`` is its capacity.
        port: TCP port (0 = pick a free one); ``host`` the bind address.
        latency_ms / per_row_latency_ms: simulated server time per request / per returned row.
        operating_limit: operating-time budget in seconds per method per 10 minutes (None = off);
            each call is charged its simulated latency + ``operating_cost_per_call`` +
            ``operating_cost_per_row`` x rows (deterministic). ``batch_operating``: "batch" charges a
            batch to the method ``batch`` (as measured on live portals), "methods" splits it over
            the inner methods (as the docs say).
        access_token_lifetime: OAuth access-token lifetime in seconds.
        timezone: the portal's UTC offset used for every datetime on the wire.
        data: a JSON fixture (see ``store.save``) to load instead of generating.
        enforce_https: answer plain HTTP with 400 ``INVALID_REQUEST``; defaults to ``tls``.
        clock: time source for tokens, limits and LAST_UPDATED (tests can pass a fake).
        not_found_message: the legacy not-found text ("Not found"; the docs also show
            "Activity is not found").
    """

    def __init__(
        self,
        *,
        activities: int = 1000,
        seed: int = 1,
        tls: bool = True,
        rate_limit: float | None = None,
        burst: int = 50,
        port: int = 0,
        host: str = "127.0.0.1",
        latency_ms: float = 0.0,
        per_row_latency_ms: float = 0.0,
        operating_limit: float | None = None,
        operating_cost_per_call: float = 0.0,
        operating_cost_per_row: float = 0.0,
        batch_operating: str = "batch",
        access_token_lifetime: float = 3600.0,
        timezone: str = "+03:00",
        data: str | Path | None = None,
        user_id: int | str = 1,
        webhook_code: str | None = None,
        client_id: str = "local.emulator0000000001",
        client_secret: str | None = None,
        scopes: tuple[str, ...] | list[str] | str = ("crm", "user"),
        enforce_https: bool | None = None,
        clock: Callable[[], float] = time.time,
        not_found_message: str = "Not found",
        verbose: bool = False,
    ) -> None:
        if isinstance(scopes, str):
            scopes = tuple(s.strip() for s in scopes.split(",") if s.strip())
        digest = hashlib.sha256(f"b24-emulator-{seed}".encode()).hexdigest()
        self.config = PortalConfig(
            user_id=str(user_id),
            webhook_code=webhook_code or digest[:16],
            client_id=client_id,
            client_secret=client_secret or digest[16:56],
            scopes=tuple(scopes),
            rate_limit=rate_limit,
            burst=burst,
            operating_limit=operating_limit,
            operating_cost_per_call=operating_cost_per_call,
            operating_cost_per_row=operating_cost_per_row,
            batch_operating=batch_operating,
            latency_ms=latency_ms,
            per_row_latency_ms=per_row_latency_ms,
            access_token_lifetime=access_token_lifetime,
            enforce_https=tls if enforce_https is None else enforce_https,
            seed=seed,
            member_id=digest[:32],
            not_found_message=not_found_message,
        )
        self.tls = tls
        self.host = host
        self.requested_port = port
        self.verbose = verbose
        self.clock = clock
        self.store = ActivityStore(timezone=timezone, clock=clock)
        self.store.default_user_id = str(user_id)
        if data is not None:
            self.store.load(data)
        else:
            populate(self.store, activities, seed)
        self._stop_event = threading.Event()
        self.portal = Portal(
            self.config, self.store, clock=clock, base_url=lambda: self.base_url, stop_event=self._stop_event
        )
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._ca_cert: str | None = None
        self._tls_files: TlsFiles | None = None
        self._tls_release: weakref.finalize[Any, Any] | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Bitrix24Emulator:
        """Bind and serve in a background thread; returns self."""
        if self._server is not None:
            return self
        context = None
        if self.tls:
            files = self._lease_tls_files()
            self._ca_cert = files.ca_cert
            context = server_context(files)
        self._stop_event.clear()
        self._server = EmulatorServer(
            (self.host, self.requested_port), self.portal, context, verbose=self.verbose
        )
        self._port = int(self._server.server_address[1])
        self._thread = serve_in_thread(self._server)
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and give back the TLS files (idempotent)."""
        server = self._server
        if server is not None:
            self._stop_event.set()
            server.shutdown()
            server.close_all()
            server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = None
            self._thread = None
        if self._tls_release is not None:
            self._tls_release()  # the last emulator of the process removes the certificate directory
            self._tls_release = None
            self._tls_files = None

    def _lease_tls_files(self) -> TlsFiles:
        """The process's shared CA, held until ``stop()`` (or garbage collection, or interpreter exit)."""
        if self._tls_files is None:
            self._tls_files = acquire_tls_files()
            self._tls_release = weakref.finalize(self, release_tls_files, self._tls_files)
        return self._tls_files

    def __enter__(self) -> Bitrix24Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True between ``start`` and ``stop``."""
        return self._server is not None

    # ------------------------------------------------------------------ addresses
    @property
    def port(self) -> int:
        """The bound TCP port (after ``start``)."""
        if self._port is None:
            raise RuntimeError("the emulator is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:<port>`` (``http://`` when ``tls=False``)."""
        if self._port is None:
            return ""
        scheme = "https" if self.tls else "http"
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"{scheme}://{host}:{self._port}"

    @property
    def webhook_url(self) -> str:
        """``<base_url>/rest/<user_id>/<code>/`` (trailing slash)."""
        return f"{self.base_url}/rest/{self.config.user_id}/{self.config.webhook_code}/"

    @property
    def oauth_url(self) -> str:
        """``<base_url>/rest/`` (the ``client_endpoint`` of OAuth calls)."""
        return f"{self.base_url}/rest/"

    @property
    def token_url(self) -> str:
        """``<base_url>/oauth/token/`` (the OAuth server)."""
        return f"{self.base_url}/oauth/token/"

    @property
    def ca_cert(self) -> str | None:
        """Path of the CA PEM that verifies the server (None when ``tls=False``); removed by ``stop()``
        once no other emulator of the process uses it."""
        if self.tls and self._ca_cert is None:
            self._ca_cert = self._lease_tls_files().ca_cert
        return self._ca_cert

    @property
    def verify(self) -> str | bool:
        """What to pass as ``requests``' ``verify=``."""
        return self.ca_cert or True

    # ------------------------------------------------------------------ credentials
    @property
    def user_id(self) -> str:
        return self.config.user_id

    @property
    def webhook_code(self) -> str:
        return self.config.webhook_code

    @property
    def client_id(self) -> str:
        return self.config.client_id

    @property
    def client_secret(self) -> str:
        return self.config.client_secret

    @property
    def access_token(self) -> str:
        """The initial OAuth access token (as after installing the app)."""
        return self.portal.oauth.initial_access

    @property
    def refresh_token(self) -> str:
        """The initial OAuth refresh token (single use: it rotates)."""
        return self.portal.oauth.initial_refresh

    def _extra_verify(self) -> dict[str, Any]:
        return {"verify": self.ca_cert} if self.tls else {}

    def connection(self) -> dict[str, Any]:
        """An Airflow connection (webhook auth) as a dict of plain JSON values."""
        return {
            "conn_type": "bitrix24",
            "host": self.base_url,
            "login": self.config.user_id,
            "password": self.config.webhook_code,
            "extra": self._extra_verify(),
        }

    def oauth_connection(self) -> dict[str, Any]:
        """The same portal with OAuth auth (tokens from this emulator's token server)."""
        access, refresh = self.portal.oauth.issue()
        return {
            "conn_type": "bitrix24",
            "host": self.base_url,
            "extra": {
                "auth_type": "oauth",
                "client_id": self.config.client_id,
                "client_secret": self.config.client_secret,
                "access_token": access,
                "refresh_token": refresh,
                "oauth_server": self.base_url,
                **self._extra_verify(),
            },
        }

    def connection_json(self, *, oauth: bool = False) -> str:
        """``connection()`` as JSON, ready for ``AIRFLOW_CONN_BITRIX24_DEFAULT``."""
        return json.dumps(self.oauth_connection() if oauth else self.connection())

    def connection_uri(self) -> str:
        """The webhook connection as an Airflow URI; the host is the URL-encoded ``base_url``."""
        query = f"?verify={quote(self.ca_cert, safe='')}" if self.tls and self.ca_cert else ""
        return (
            f"bitrix24://{quote(self.config.user_id, safe='')}:{quote(self.config.webhook_code, safe='')}"
            f"@{quote(self.base_url, safe='')}/{query}"
        )

    # ------------------------------------------------------------------ control
    @property
    def faults(self) -> FaultSet:
        """Fault injection: ``emu.faults.add(kind, method=None, times=1, **opts)``."""
        return self.portal.faults

    @property
    def stats(self) -> dict[str, Any]:
        """Counters: requests, rejected_rate_limit, methods, batch_commands, token_refreshes, ..."""
        return self.portal.stats.snapshot()

    def stats_reset(self) -> None:
        """Zero every counter."""
        self.portal.stats.reset()

    def reset_limits(self) -> None:
        """Empty the leaky bucket and the operating-time meter."""
        self.portal.reset_limits()

    def expire_tokens(self) -> None:
        """Expire every OAuth access token now (the next call gets 401 ``expired_token``)."""
        self.portal.oauth.expire_all()

    def revoke_refresh_tokens(self) -> None:
        """Invalidate every refresh token (the next refresh gets ``invalid_grant``)."""
        self.portal.oauth.revoke_refresh_tokens()

    def issue_tokens(self) -> tuple[str, str]:
        """A fresh (access_token, refresh_token) pair, as after re-authorizing the app."""
        return self.portal.oauth.issue()

    def set_rate_limit(self, rate: float | None, burst: int | None = None) -> None:
        """Change the leaky bucket at run time."""
        self.portal.bucket.rate = rate
        if burst is not None:
            self.portal.bucket.burst = burst
        self.portal.bucket.reset()

    def set_latency(self, latency_ms: float, per_row_latency_ms: float | None = None) -> None:
        """Change the simulated latency at run time."""
        self.config.latency_ms = latency_ms
        if per_row_latency_ms is not None:
            self.config.per_row_latency_ms = per_row_latency_ms

    def set_operating_limit(self, seconds: float | None) -> None:
        """Change the operating-time budget at run time."""
        self.config.operating_limit = seconds
        self.portal.meter.budget = seconds

    def __repr__(self) -> str:
        state = self.base_url or "stopped"
        return f"<Bitrix24Emulator {state} activities={len(self.store)}>"
