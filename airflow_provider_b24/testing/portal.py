"""The emulated portal, transport-free: one HTTP request in, one HTTP response out.

Order of checks for ``/rest/...`` (each documented in docs/emulator.md): injected fault → HTTPS
required → credentials → leaky bucket → method exists → scope → operating-time budget → run →
simulated latency → operating charge → envelope. ``/oauth/token/`` is the OAuth server.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_b24.testing.auth import AuthResult, OAuthState, TokenStatus
from airflow_provider_b24.testing.batch import run_batch
from airflow_provider_b24.testing.errors import ApiError
from airflow_provider_b24.testing.events import EVENT_HANDLERS, EventHub
from airflow_provider_b24.testing.faults import Fault, FaultKind, FaultSet
from airflow_provider_b24.testing.limits import LeakyBucket, OperatingMeter
from airflow_provider_b24.testing.methods import HANDLERS, Env, MethodResult, scope_of
from airflow_provider_b24.testing.phpquery import parse_str
from airflow_provider_b24.testing.stats import Stats
from airflow_provider_b24.testing.store import ActivityStore
from airflow_provider_b24.testing.timeutil import format_ts
from airflow_provider_b24.testing.wire import HTML, HttpRequest, HttpResponse, html_page, json_body

__all__ = ["HttpRequest", "HttpResponse", "Portal", "PortalConfig", "Stats"]


@dataclass
class PortalConfig:
    """Everything configurable about the portal (see ``Bitrix24Emulator`` for meanings)."""

    user_id: str = "1"
    webhook_code: str = "emulatorwebhook0123456789"
    client_id: str = "local.emulator0000000001"
    client_secret: str = "emulatorclientsecret0123456789abcdef"
    scopes: tuple[str, ...] = ("crm", "user")
    rate_limit: float | None = None
    burst: int = 50
    operating_limit: float | None = None
    operating_cost_per_call: float = 0.0
    operating_cost_per_row: float = 0.0
    batch_operating: str = "batch"  # "batch": charged to `batch`; "methods": to each inner method
    latency_ms: float = 0.0
    per_row_latency_ms: float = 0.0
    access_token_lifetime: float = 3600.0
    enforce_https: bool = True
    seed: int = 1
    member_id: str = ""
    not_found_message: str = "Not found"
    offline_extended: bool = True  # plan feature rest_offline_extended (event.offline.get clear=0)


#: Every REST method the portal answers (CRM and portal methods, then the event.* family).
ALL_HANDLERS = {**HANDLERS, **EVENT_HANDLERS}

_HTML_FAULTS = {
    FaultKind.HTTP_500_HTML: (500, "Internal Server Error"),
    FaultKind.HTTP_502_HTML: (502, "Bad Gateway"),
    FaultKind.HTTP_503_HTML: (503, "Service Temporarily Unavailable"),
    FaultKind.HTTP_504_HTML: (504, "Gateway Time-out"),
    FaultKind.HTTP_403_HTML: (403, "Forbidden"),
}


#: ``GET`` this path for the emulator's counters (``emu.stats``) as JSON, e.g. from ``make demo``.
STATS_PATH = "/_emulator/stats"


class Portal:
    """The emulated portal's behaviour; thread-safe."""

    def __init__(
        self,
        config: PortalConfig,
        store: ActivityStore,
        *,
        clock: Callable[[], float] = time.time,
        base_url: Callable[[], str] = lambda: "",
        stop_event: threading.Event | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.base_url = base_url
        self.stop_event = stop_event or threading.Event()
        self.stats = Stats()
        self.faults = FaultSet(config.seed)
        self.bucket = LeakyBucket(config.rate_limit, config.burst, clock)
        self.meter = OperatingMeter(config.operating_limit, clock)
        self.oauth = OAuthState(
            client_id=config.client_id,
            client_secret=config.client_secret,
            user_id=config.user_id,
            scopes=config.scopes,
            lifetime=config.access_token_lifetime,
            clock=clock,
            seed=config.seed,
        )
        self.events = EventHub(
            clock=store.clock, tz=store.tz, scopes=config.scopes, offline_extended=config.offline_extended
        )
        store.listeners.append(self.events.on_change)

    # ------------------------------------------------------------------ entry point
    def handle(self, request: HttpRequest) -> HttpResponse:
        """Answer one HTTP request."""
        path = request.path
        if path.startswith("/oauth/token"):
            return self._token_endpoint(request)
        if path.startswith("/rest/"):
            return self._rest(request)
        if path == STATS_PATH:
            # Not a Bitrix24 path: lets a script read what a CLI emulator served (not counted itself).
            body = json.dumps(self.stats.snapshot()).encode()
            return HttpResponse(200, body, content_type="application/json")
        if path.startswith("/bitrix/tools/crm_show_file.php"):
            return HttpResponse(200, b"%PDF-1.4\n% emulator file\n", content_type="application/pdf")
        return HttpResponse(404, html_page(404, "Not Found"), content_type=HTML)

    # ------------------------------------------------------------------ helpers
    def fmt(self, epoch: float) -> str:
        """ISO 8601 in the portal's offset."""
        return format_ts(epoch, self.store.tz)

    def _params(self, request: HttpRequest) -> dict[str, Any]:
        params: dict[str, Any] = parse_str(request.query) if request.query else {}
        body = request.body
        if body:
            content_type = request.headers.get("content-type", "").lower()
            if "json" in content_type or (not content_type and body[:1] in (b"{", b"[")):
                try:
                    decoded = json.loads(body)
                except ValueError:
                    decoded = None
                if isinstance(decoded, dict):
                    params.update(decoded)
            else:
                with contextlib.suppress(UnicodeDecodeError):
                    params.update(parse_str(body.decode("utf-8")))
        return params

    def _error(self, exc: ApiError) -> HttpResponse:
        self.stats.record(exc.status, exc.error)
        return HttpResponse(exc.status, json_body(exc.body()))

    def _fault_response(self, fault: Fault, request: HttpRequest) -> HttpResponse | None:
        """The response for an injected fault (None for ``slow``: handled by the caller)."""
        self.stats.add("faults_injected")
        kind = fault.kind
        opts = fault.opts
        if kind in _HTML_FAULTS:
            status, title = _HTML_FAULTS[kind]
            self.stats.record(status, f"html_{status}")
            return HttpResponse(status, html_page(status, title), content_type=HTML)
        if kind is FaultKind.HTTP_500_JSON:
            return self._error(ApiError.internal())
        if kind is FaultKind.MALFORMED_JSON:
            self.stats.record(200)
            return HttpResponse(200, b'{"result": {"ID": "1",, "time": <br />\n<b>Fatal error</b>')
        if kind is FaultKind.QUERY_LIMIT:
            self.stats.add("rejected_rate_limit")
            return self._error(ApiError.query_limit())
        if kind is FaultKind.OVERLOAD:
            return self._error(ApiError.overload())
        if kind is FaultKind.EXPIRED_TOKEN:
            return self._error(ApiError.expired_token())
        if kind is FaultKind.INVALID_TOKEN:
            return self._error(ApiError.invalid_token())
        if kind is FaultKind.OPERATION_TIME_LIMIT:
            reset_at = int(self.clock() + float(opts.get("reset_in", 2)))
            return self._error(ApiError.operation_time_limit(reset_at, float(opts.get("operating", 480.0))))
        if kind is FaultKind.ERROR:
            return self._error(
                ApiError(
                    int(opts.get("status", 400)),
                    str(opts.get("error", "")),
                    str(opts.get("error_description", opts.get("description", "Error"))),
                )
            )
        if kind is FaultKind.REDIRECT:
            location = opts.get("location")
            if not location:
                base = opts.get("base_url")
                if base:
                    target = urlsplit(str(base))
                    netloc = target.netloc
                    scheme = target.scheme
                else:
                    own = urlsplit(self.base_url())
                    host = "localhost" if own.hostname == "127.0.0.1" else "127.0.0.1"
                    netloc = f"{host}:{own.port}"
                    scheme = own.scheme
                location = urlunsplit((scheme, netloc, request.path, request.query, ""))
            self.stats.record(302)
            return HttpResponse(
                302, html_page(302, "Found"), content_type=HTML, headers=[("Location", str(location))]
            )
        return None

    # ------------------------------------------------------------------ OAuth server
    def _token_endpoint(self, request: HttpRequest) -> HttpResponse:
        stats = self.stats
        stats.add("token_requests")
        query = parse_str(request.query) if request.query else {}
        if "client_secret" in query or "refresh_token" in query:
            stats.add("oauth_secrets_in_query")
        fault = self.faults.take("oauth.token")
        delay = 0.0
        if fault is not None:
            if fault.kind is FaultKind.SLOW:
                delay = float(fault.opts.get("seconds", 5))
            else:
                response = self._fault_response(fault, request)
                if response is not None:
                    return response
        params = self._params(request)

        def oauth_error(status: int, code: str, description: str) -> HttpResponse:
            stats.add("token_errors")
            stats.record(status, code)
            return HttpResponse(
                status, json_body({"error": code, "error_description": description}), delay=delay
            )

        grant = str(params.get("grant_type", ""))
        if grant != "refresh_token":
            return oauth_error(
                400, "invalid_request", "Unsupported grant_type; only refresh_token is emulated"
            )
        if (
            params.get("client_id") != self.config.client_id
            or params.get("client_secret") != self.config.client_secret
        ):
            return oauth_error(401, "invalid_client", "Invalid client credentials")
        refresh_token = params.get("refresh_token")
        if not refresh_token:
            return oauth_error(400, "invalid_request", 'No "refresh_token" parameter found')
        rotated = self.oauth.rotate(str(refresh_token))
        if rotated is None:
            return oauth_error(400, "invalid_grant", "Invalid grant")
        access, refresh, expires = rotated
        stats.add("token_refreshes")
        stats.record(200)
        base = self.base_url()
        body = {
            "access_token": access,
            "expires": expires,
            "expires_in": int(self.config.access_token_lifetime),
            "scope": ",".join(self.config.scopes),
            "domain": urlsplit(base).netloc,
            "server_endpoint": f"{base}/rest/",
            "status": "L",
            "client_endpoint": f"{base}/rest/",
            "member_id": self.config.member_id,
            "user_id": int(self.config.user_id),
            "refresh_token": refresh,
        }
        return HttpResponse(200, json_body(body), delay=delay)

    # ------------------------------------------------------------------ REST
    def _authenticate(self, segments: list[str], params: Mapping[str, Any]) -> AuthResult:
        config = self.config
        if len(segments) == 3:
            user_id, code = segments[0], segments[1]
            if user_id != config.user_id or code != config.webhook_code:
                raise ApiError.invalid_credentials()
            return AuthResult(f"webhook:{user_id}", user_id, config.scopes, "webhook")
        token = params.get("auth")
        if not token:
            raise ApiError.no_auth()
        status = self.oauth.check(str(token))
        if status is TokenStatus.EXPIRED:
            raise ApiError.expired_token()
        if status is TokenStatus.INVALID:
            raise ApiError.invalid_token()
        return AuthResult(f"app:{config.client_id}", config.user_id, config.scopes, "oauth")

    def _env(self, auth: AuthResult) -> Env:
        return Env(
            store=self.store,
            base_url=self.base_url(),
            user_id=auth.user_id,
            scopes=auth.scopes,
            member_id=self.config.member_id,
            auth_kind=auth.kind,
            client_id=self.config.client_id,
            not_found=self.config.not_found_message,
            events=self.events,
        )

    def _execute(self, method: str, params: Mapping[str, Any], auth: AuthResult, env: Env) -> MethodResult:
        handler = ALL_HANDLERS.get(method)
        if handler is None:
            raise ApiError.method_not_found()
        needed = scope_of(method)
        if needed is not None and needed not in auth.scopes:
            raise ApiError.insufficient_scope()
        return handler(env, params)

    def _rest(self, request: HttpRequest) -> HttpResponse:
        stats = self.stats
        stats.add("requests")
        if not request.secure:
            stats.add("plain_http_requests")
        received = time.time()
        segments = request.path[len("/rest/") :].split("/")
        method = segments[-1].strip().lower() if segments else ""
        for suffix in (".json", ".xml"):
            if method.endswith(suffix):
                method = method[: -len(suffix)]
        if len(segments) not in (1, 3):
            return self._error(ApiError.method_not_found())

        delay = 0.0
        fault = self.faults.take(method)
        if fault is not None:
            if fault.kind is FaultKind.SLOW:
                self.stats.add("faults_injected")
                delay = float(fault.opts.get("seconds", 5))
            elif fault.kind not in (FaultKind.TRUNCATED_JSON, FaultKind.CONNECTION_RESET):
                response = self._fault_response(fault, request)
                if response is not None:
                    return response
            else:
                self.stats.add("faults_injected")

        response = self._rest_call(request, segments, method, received)
        response.delay += delay
        if fault is not None and fault.kind is FaultKind.TRUNCATED_JSON:
            response.body = response.body[: max(1, len(response.body) // 2)]
        elif fault is not None and fault.kind is FaultKind.CONNECTION_RESET:
            response.reset_after = max(1, len(response.body) // 2)
        return response

    def _rest_call(
        self, request: HttpRequest, segments: list[str], method: str, received: float
    ) -> HttpResponse:
        config = self.config
        stats = self.stats
        try:
            if config.enforce_https and not request.secure:
                raise ApiError.https_required()
            params = self._params(request)
            try:
                auth = self._authenticate(segments, params)
            except ApiError:
                stats.add("rejected_auth")
                raise
            if not self.bucket.try_acquire():
                stats.add("rejected_rate_limit")
                raise ApiError.query_limit()
            if method != "batch" and method not in ALL_HANDLERS:
                raise ApiError.method_not_found()
            needed = scope_of(method)
            if needed is not None and needed not in auth.scopes:
                raise ApiError.insufficient_scope()
            blocked_until = self.meter.blocked(auth.credential, method)
            if blocked_until is not None:
                stats.add("rejected_operating")
                operating, _ = self.meter.state(auth.credential, method)
                raise ApiError.operation_time_limit(blocked_until, operating)
            stats.method(method)
            env = self._env(auth)
            if method == "batch":
                stats.add("batch_requests")
                result, rows, charged_methods = self._batch(params, auth, env)
                total: int | None = None
                nxt: int | None = None
            else:
                answer = self._execute(method, params, auth, env)
                result, rows, total, nxt = answer.result, answer.rows, answer.total, answer.next
                charged_methods = []
        except ApiError as exc:
            return self._error(exc)
        stats.add("rows_returned", rows)
        latency = (config.latency_ms + config.per_row_latency_ms * rows) / 1000.0
        cost = latency + config.operating_cost_per_call + config.operating_cost_per_row * rows
        if method == "batch" and config.batch_operating == "methods":
            per = cost / max(1, len(charged_methods))
            for inner in charged_methods:
                self.meter.charge(auth.credential, inner, per)
        else:
            self.meter.charge(auth.credential, method, cost)
        operating, reset_at = self.meter.state(auth.credential, method)
        finished = time.time() + latency
        body: dict[str, Any] = {"result": result}
        if total is not None:
            if nxt is not None:
                body["next"] = nxt
            body["total"] = total
        body["time"] = {
            "start": received,
            "finish": finished,
            "duration": finished - received,
            "processing": finished - received,
            "date_start": self.fmt(received),
            "date_finish": self.fmt(finished),
            "operating_reset_at": reset_at,
            "operating": operating,
        }
        stats.record(200)
        return HttpResponse(200, json_body(body), delay=latency)

    def _batch(self, params: Mapping[str, Any], auth: AuthResult, env: Env) -> tuple[Any, int, list[str]]:
        stats = self.stats

        def execute(method: str, cmd_params: Mapping[str, Any]) -> MethodResult:
            stats.method(method, in_batch=True)
            return self._execute(method, cmd_params, auth, env)

        def command_fault(method: str) -> ApiError | None:
            fault = self.faults.take(method, batch_command=True)
            if fault is None:
                return None
            stats.add("faults_injected")
            return ApiError(
                int(fault.opts.get("status", 400)),
                str(fault.opts.get("error", "")),
                str(fault.opts.get("error_description", fault.opts.get("description", "Not found"))),
            )

        outcome = run_batch(params, execute, tz_format=self.fmt, command_fault=command_fault)
        stats.add("batch_commands", len(outcome.commands))
        return outcome.result, outcome.rows, outcome.commands

    def reset_limits(self) -> None:
        """Empty the leaky bucket and forget operating-time charges."""
        self.bucket.reset()
        self.meter.reset()
