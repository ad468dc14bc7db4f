"""``Bitrix24Client``: the one place where HTTP requests to a portal are made.

Every request goes through :meth:`Bitrix24Client._request`, which in order: paces the call (the
portal's shared leaky bucket and the method's operating-time budget), adds authentication, POSTs the
JSON body (redirects are followed by hand so a 302 repeats the *POST*), classifies the answer into a
typed :class:`Bitrix24Error`, and applies the retry policy of :mod:`.retry` (refresh on
``expired_token``, wait on ``OPERATION_TIME_LIMIT``).

Secrets (webhook code, tokens, client secret) never reach a log line, an exception text, a repr or a
return value: logged URLs show the code as ``***``, transport exceptions are re-raised without their
original text (which contains the URL), and response excerpts are redacted.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import requests
from urllib3.exceptions import NameResolutionError, NewConnectionError

from airflow_provider_b24.client import pagination
from airflow_provider_b24.client.auth import OAuthAuth, WebhookAuth
from airflow_provider_b24.client.batch import (
    MAX_BATCH,
    BatchResult,
    Command,
    merge_response,
    prepare_commands,
    split_commands,
)
from airflow_provider_b24.client.config import ClientConfig, parse_portal_url
from airflow_provider_b24.client.decoding import decode_json
from airflow_provider_b24.client.encoding import excerpt, json_body, origin, redact, register_secrets
from airflow_provider_b24.client.errors import (
    Bitrix24ArgumentError,
    Bitrix24Error,
    Bitrix24OperationTimeLimit,
    Bitrix24RateLimited,
    Bitrix24ServerError,
    Bitrix24TokenExpired,
    Bitrix24TransportError,
    classify_error,
)
from airflow_provider_b24.client.limiter import (
    DEFAULT_REGISTRY,
    Clock,
    LimiterRegistry,
    SystemClock,
    parse_reset_at,
)
from airflow_provider_b24.client.retry import backoff_delay, is_read_batch, is_read_method
from airflow_provider_b24.version import __version__

USER_AGENT = f"airflow-provider-b24/{__version__}"
_REDIRECTS = (301, 302, 303, 307, 308)
#: When a 429 carries no reset time and none was seen before: the block lifts within 10 minutes.
_UNKNOWN_RESET_S = 600.0
_MAX_OPERATING_WAITS = 3
#: Set per request, not on the session: the OAuth refresh on the same session posts a form.
_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


@dataclass
class ClientStats:
    """Counters of one client (cumulative).

    :ivar requests: HTTP requests sent to the portal, retries included (token refreshes excluded).
    :ivar retries: requests repeated after a transient failure.
    :ivar limiter_wait_s: seconds spent waiting for the leaky bucket and the operating budget.
    :ivar rejected_503: 503 ``QUERY_LIMIT_EXCEEDED`` answers received.
    :ivar operating_waits: waits for a 429 ``OPERATION_TIME_LIMIT`` reset.
    :ivar refreshes: OAuth refreshes performed over HTTP.
    :ivar redirects: portal moves (302) followed.
    """

    requests: int = 0
    retries: int = 0
    limiter_wait_s: float = 0.0
    rejected_503: int = 0
    operating_waits: int = 0
    refreshes: int = 0
    redirects: int = 0

    def snapshot(self) -> ClientStats:
        return ClientStats(**asdict(self))


class LoggerLike(Protocol):
    """What the client needs from a logger: stdlib ``logging.Logger`` and Airflow's structlog both fit."""

    def debug(self, msg: str, *args: Any) -> Any: ...

    def info(self, msg: str, *args: Any) -> Any: ...

    def warning(self, msg: str, *args: Any) -> Any: ...


class _Failure(Exception):
    """Internal: a classified failure plus whether the request may have been executed."""

    def __init__(self, error: Bitrix24Error, *, maybe_executed: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.maybe_executed = maybe_executed


class Bitrix24Client:
    """A synchronous Bitrix24 REST client (no Airflow imports; usable on its own).

    :param base_url: the portal, e.g. ``https://example.bitrix24.com`` (``http://`` only when written).
    :param auth: :class:`WebhookAuth` or :class:`OAuthAuth`.
    :param config: tunables (timeouts, retries, limits); defaults are the cloud's.
    :param logger: where to log (the hook passes its ``self.log``).
    :param session: a ``requests.Session`` to use (one is created otherwise; closed by :meth:`close`).
    :param clock: time source (tests pass a fake one).
    :param limiters: the registry of shared per-portal limiters (default: process-wide).
    :param rng: random source for retry jitter.
    """

    def __init__(
        self,
        base_url: str,
        auth: WebhookAuth | OAuthAuth,
        config: ClientConfig | None = None,
        *,
        logger: LoggerLike | None = None,
        session: requests.Session | None = None,
        clock: Clock | None = None,
        limiters: LimiterRegistry | None = None,
        rng: random.Random | None = None,
    ) -> None:
        portal = parse_portal_url(base_url, field_name="base_url")
        self.base_url = portal.base_url
        self.auth = auth
        self.config = config or ClientConfig()
        self.log: LoggerLike = logger or logging.getLogger("airflow_provider_b24.client")
        self._own_session = session is None
        self.session = session or requests.Session()
        self.session.headers.update(
            {
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            }
        )
        self.clock: Clock = clock or SystemClock()
        self._limiters = limiters or DEFAULT_REGISTRY
        host = urlsplit(self.base_url).netloc
        self._bucket = self._limiters.bucket(host, self.config.rate_limit, self.config.burst)
        self._operating = self._limiters.operating(host)
        self._rng = rng or random.Random()
        self.stats = ClientStats()
        self._stats_lock = threading.Lock()  # batches may run in parallel threads (fetch_activities)
        self._local = threading.local()
        register_secrets(self._secrets())
        if portal.insecure:
            self.log.warning(
                "Bitrix24 portal %s is reached over plain http://; secrets travel unencrypted", self.base_url
            )

    # ------------------------------------------------------------------ dunder
    def __repr__(self) -> str:
        return f"Bitrix24Client(base_url={self.base_url!r}, auth={self.auth!r})"

    def __enter__(self) -> Bitrix24Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session (if the client created it)."""
        if self._own_session:
            self.session.close()

    # ------------------------------------------------------------------ public API
    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Call one REST method and return its ``result`` value as sent (scalars are strings)."""
        return self.call_envelope(method, params).get("result")

    def call_envelope(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Call one REST method and return the whole JSON body (``result``, ``time``, ``total``, ``next``)."""
        method = self._check_method(method)
        before, started = self._thread_stats().snapshot(), self.clock.monotonic()
        envelope = self._envelope(method, params or {})
        self._log_operation(method, before, started, rows=None)
        return envelope

    def batch(self, commands: Mapping[str, Command], *, halt: bool = False) -> BatchResult:
        """Run any number of commands (``{key: (method, params)}``), ≤ 50 per HTTP request, in order.

        Per-command errors land in :attr:`BatchResult.errors` (successes are kept). With ``halt``, the
        server stops at the first failing command and later chunks are not sent.
        """
        before, started = self._thread_stats().snapshot(), self.clock.monotonic()
        outcome = self._batch(commands, halt=halt)
        self._log_operation(
            f"batch of {len(commands)} command(s)", before, started, rows=None, errors=len(outcome.errors)
        )
        return outcome

    def iter_list(
        self, method: str, params: Mapping[str, Any] | None = None, *, fast: bool | None = None
    ) -> Iterator[Any]:
        """Yield every row of a ``*.list`` method once, lazily, across all pages.

        :param fast: ``None`` (default) uses keyset paging (2,500 rows per request) when the method is a
            known legacy CRM list and the caller set no other ``order`` and no ``start``; ``True``
            forces it, ``False`` forces ``start``/``next`` offsets.
        """
        method = self._check_method(method)
        params = dict(params or {})
        plan = pagination.keyset_plan(method, params, fast)
        return self._iter_list(method, params, plan)

    def _iter_list(self, method: str, params: dict[str, Any], plan: dict[str, Any] | None) -> Iterator[Any]:
        before, started = self._thread_stats().snapshot(), self.clock.monotonic()
        rows = 0
        pages = self.config.pages_per_request
        try:
            if plan is not None:
                source = pagination.iter_keyset(
                    method,
                    plan,
                    envelope=self._envelope,
                    batch=self._batch_one_chunk,
                    pages_per_request=pages,
                )
            else:
                source = pagination.iter_offset(
                    method,
                    params,
                    envelope=self._envelope,
                    batch=self._batch_one_chunk,
                    pages_per_request=pages,
                )
            for row in source:
                rows += 1
                yield row
        finally:
            mode = "keyset" if plan is not None else "offset"
            self._log_operation(f"{method} ({mode} paging)", before, started, rows=rows)

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _check_method(method: str) -> str:
        name = (method or "").strip()
        if not name or any(ch in name for ch in "/?#& "):
            raise Bitrix24ArgumentError(
                f"method {method!r} is not a REST method name such as crm.activity.get"
            )
        return name

    def _secrets(self) -> list[str]:
        return list(self.auth.secrets)

    def _log_operation(
        self, what: str, before: ClientStats, started: float, *, rows: int | None, errors: int | None = None
    ) -> None:
        after = self._thread_stats()  # this thread's work only: other threads may share the client
        parts = [what]
        if rows is not None:
            parts.append(f"{rows} row(s)")
        if errors:
            parts.append(f"{errors} command error(s)")
        self.log.info(
            "Bitrix24 %s: %d request(s), %d retr%s, %.2f s, limiter wait %.2f s",
            ", ".join(parts),
            after.requests - before.requests,
            after.retries - before.retries,
            "y" if after.retries - before.retries == 1 else "ies",
            self.clock.monotonic() - started,
            after.limiter_wait_s - before.limiter_wait_s,
        )

    def _envelope(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        return self._request(method, dict(params), read=is_read_method(method))

    def _batch(self, commands: Mapping[str, Command], *, halt: bool = False) -> BatchResult:
        prepared = prepare_commands(commands)
        outcome = BatchResult()
        for chunk in split_commands(prepared, MAX_BATCH):
            payload = {"halt": 1 if halt else 0, "cmd": {c.key: c.text for c in chunk}}
            before = self._thread_stats().requests
            envelope = self._request("batch", payload, read=is_read_batch(c.method for c in chunk))
            outcome.requests += self._thread_stats().requests - before
            merge_response(outcome, chunk, envelope)
            if halt and outcome.errors:
                break
        return outcome

    def _batch_one_chunk(self, commands: Mapping[str, Any]) -> BatchResult:
        return self._batch(commands, halt=False)

    def _url(self, method: str) -> tuple[str, str]:
        return self.base_url + self.auth.method_path(method), self.base_url + self.auth.redacted_path(method)

    # ------------------------------------------------------------------ pacing
    def _pace(self, method: str) -> None:
        cfg = self.config
        advice = self._operating.advise(method, self.clock.time(), cfg.operating_budget)
        wait = 0.0
        if advice.blocked and advice.reset_at is not None:
            delay = advice.reset_at - self.clock.time() + 1.0
            if delay > cfg.operating_max_wait:
                raise Bitrix24OperationTimeLimit(
                    "the method's operating-time budget is used up (client-side estimate); "
                    "the portal would answer OPERATION_TIME_LIMIT",
                    code="OPERATION_TIME_LIMIT",
                    method=method,
                    reset_at=advice.reset_at,
                )
            wait += max(0.0, delay)
        else:
            wait += advice.delay
        wait += self._bucket.reserve(self.clock.monotonic())
        if wait > 0:
            self.log.debug("Bitrix24 limiter: waiting %.2f s before %s", wait, method)
            self.clock.sleep(wait)
            self._count("limiter_wait_s", wait)

    def _count(self, name: str, amount: float) -> None:
        """Add to a counter of :attr:`stats` (under a lock: ``x += 1`` on an attribute is not atomic)
        and of this thread's own counters (what one operation in this thread used)."""
        with self._stats_lock:
            setattr(self.stats, name, getattr(self.stats, name) + amount)
        local = self._thread_stats()
        setattr(local, name, getattr(local, name) + amount)

    def _thread_stats(self) -> ClientStats:
        """Counters of the calling thread's requests (batches may run in parallel threads)."""
        stats: ClientStats | None = getattr(self._local, "stats", None)
        if stats is None:
            stats = self._local.stats = ClientStats()
        return stats

    # ------------------------------------------------------------------ the chokepoint
    def _request(self, method: str, payload: dict[str, Any], *, read: bool) -> dict[str, Any]:
        cfg = self.config
        attempt = 0
        refreshed = False
        operating_waits = 0
        redirects = 0
        if isinstance(self.auth, OAuthAuth) and self.auth.access_token() is None:
            self._refresh(None)
        while True:
            self._pace(method)
            body = dict(payload)
            sent_token: str | None = None
            if isinstance(self.auth, OAuthAuth):
                sent_token = self.auth.access_token()
                body["auth"] = sent_token
            try:
                envelope = self._send(method, body)
            except _Redirect as moved:
                redirects += 1
                if redirects > cfg.max_redirects:
                    raise Bitrix24TransportError(
                        f"too many portal redirects (last to {moved.new_origin})", method=method
                    ) from None
                self._count("redirects", 1)
                self.log.warning(
                    "Bitrix24 portal %s has moved to %s; repeating the POST there (update the host)",
                    self.base_url,
                    moved.new_origin,
                )
                self.base_url = moved.new_origin
                continue
            except _Failure as failure:
                error = failure.error
                if (
                    isinstance(error, Bitrix24TokenExpired)
                    and isinstance(self.auth, OAuthAuth)
                    and not refreshed
                ):
                    refreshed = True
                    self.log.info(
                        "Bitrix24 access token expired; refreshing it and repeating %s once", method
                    )
                    self._refresh(sent_token)
                    continue
                if isinstance(error, Bitrix24OperationTimeLimit):
                    reset_at = error.reset_at or self._operating.reset_at(method)
                    now = self.clock.time()
                    if reset_at is None or reset_at <= now:
                        reset_at = now + _UNKNOWN_RESET_S if reset_at is None else reset_at
                    error.reset_at = reset_at
                    error.args = (error._render(),)
                    delay = reset_at - now + 1.0
                    if delay <= cfg.operating_max_wait and operating_waits < _MAX_OPERATING_WAITS:
                        operating_waits += 1
                        self._count("operating_waits", 1)
                        self.log.warning(
                            "Bitrix24 %s: OPERATION_TIME_LIMIT; waiting %.1f s for the budget to reset",
                            method,
                            delay,
                        )
                        self.clock.sleep(max(0.0, delay))
                        self._count("limiter_wait_s", max(0.0, delay))
                        continue
                    raise error from None
                if isinstance(error, Bitrix24RateLimited):
                    self._count("rejected_503", 1)
                    self._bucket.fill(self.clock.monotonic())
                may_retry = error.retryable and (read or not failure.maybe_executed)
                if may_retry and attempt < cfg.max_retries:
                    attempt += 1
                    self._count("retries", 1)
                    delay = backoff_delay(attempt, base=cfg.backoff_base, cap=cfg.backoff_max, rng=self._rng)
                    self.log.warning(
                        "Bitrix24 %s failed (%s); retry %d of %d in %.1f s",
                        method,
                        error,
                        attempt,
                        cfg.max_retries,
                        delay,
                    )
                    self.clock.sleep(delay)
                    continue
                if error.retryable and not may_retry:
                    error.description += " (not repeated: the write may have been executed)"
                    error.args = (error._render(),)
                raise error from None
            self._operating.record(method, envelope.get("time"))
            return envelope

    def _refresh(self, stale: str | None) -> None:
        assert isinstance(self.auth, OAuthAuth)
        did = self.auth.refresh(
            self.session,
            stale_access_token=stale,
            timeout=(self.config.connect_timeout, self.config.timeout),
            verify=self.config.verify,
        )
        if did:
            self._count("refreshes", 1)
            self.log.info("Bitrix24 OAuth tokens refreshed and saved to the token store")
        register_secrets(self._secrets())

    def _send(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        """One HTTP exchange: POST, then parse or classify. Raises ``_Failure`` or ``_Redirect``."""
        url, shown = self._url(method)
        secrets = self._secrets()
        started = self.clock.monotonic()
        self._count("requests", 1)
        try:
            response = self.session.post(
                url,
                data=json_body(body),
                headers=_JSON_HEADERS,
                timeout=(self.config.connect_timeout, self.config.timeout),
                verify=self.config.verify,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise self._transport_failure(exc, method, shown) from None
        elapsed = self.clock.monotonic() - started
        self.log.debug("Bitrix24 POST %s -> HTTP %d in %.3f s", shown, response.status_code, elapsed)

        if response.status_code in _REDIRECTS and response.headers.get("Location"):
            target = urljoin(url, response.headers["Location"])
            new_origin = origin(target)
            if urlsplit(self.base_url).scheme == "https" and urlsplit(new_origin).scheme != "https":
                raise _Failure(
                    Bitrix24TransportError(
                        f"the portal redirected to {urlsplit(new_origin).netloc} over plain http; refused",
                        http_status=response.status_code,
                        method=method,
                    ),
                    maybe_executed=False,
                )
            raise _Redirect(new_origin)

        status = response.status_code
        try:
            data = decode_json(response)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            text = redact(response.text or "", secrets)
            snippet = excerpt(text, secrets)
            kind = "an unreadable JSON body" if text.lstrip().startswith(("{", "[")) else "a non-JSON body"
            if status >= 500:
                raise _Failure(
                    Bitrix24ServerError(
                        f"HTTP {status} with {kind}: {snippet}", http_status=status, method=method
                    ),
                    maybe_executed=True,
                )
            truncated = 200 <= status < 300
            raise _Failure(
                Bitrix24TransportError(
                    f"HTTP {status} with {kind}: {snippet}",
                    http_status=status,
                    method=method,
                    retryable=truncated,
                ),
                maybe_executed=True,
            )
        if data.get("error") not in (None, "") or "error_description" in data or status >= 400:
            time_block = data.get("time") if isinstance(data.get("time"), Mapping) else None
            if time_block:
                self._operating.record(method, time_block)
            reset_at = parse_reset_at(time_block.get("operating_reset_at")) if time_block else None
            description = excerpt(str(data.get("error_description") or ""), secrets)
            error = classify_error(
                data.get("error", ""), description, http_status=status, method=method, reset_at=reset_at
            )
            # A 5xx may have run the method; 503 QUERY_LIMIT_EXCEEDED and 429 were refused up front.
            refused = isinstance(error, Bitrix24RateLimited) or status < 500
            raise _Failure(error, maybe_executed=not refused)
        if "result" not in data:
            # A 2xx JSON body without `result` is no Bitrix24 answer (a proxy, a broken gateway). Reading
            # it as "no rows" would silently lose data, so it is a (retryable) server fault.
            raise _Failure(
                Bitrix24ServerError(
                    f"HTTP {status} with a JSON body that has no 'result': {excerpt(response.text, secrets)}",
                    http_status=status,
                    method=method,
                ),
                maybe_executed=True,
            )
        return data

    def _transport_failure(self, exc: requests.RequestException, method: str, shown: str) -> _Failure:
        """Classify a ``requests`` exception; its own text (with the URL) is never reused."""
        name = type(exc).__name__
        if isinstance(exc, requests.exceptions.SSLError):
            return _Failure(
                Bitrix24TransportError(
                    f"TLS handshake with {origin(self.base_url)} failed ({name}); check the certificate "
                    "or set the connection extra verify to a CA bundle path",
                    code="TLS_ERROR",
                    method=method,
                    retryable=False,
                ),
                maybe_executed=False,
            )
        if isinstance(exc, requests.exceptions.ConnectTimeout) or _never_connected(exc):
            return _Failure(
                Bitrix24TransportError(
                    f"could not connect to {origin(self.base_url)} ({name})",
                    code="CONNECT_ERROR",
                    method=method,
                    retryable=True,
                ),
                maybe_executed=False,
            )
        if isinstance(exc, requests.exceptions.ReadTimeout):
            return _Failure(
                Bitrix24TransportError(
                    f"no answer from {origin(self.base_url)} within {self.config.timeout:g} s ({name})",
                    code="READ_TIMEOUT",
                    method=method,
                    retryable=True,
                ),
                maybe_executed=True,
            )
        if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
            return _Failure(
                Bitrix24TransportError(f"invalid request URL ({name})", method=method, retryable=False),
                maybe_executed=False,
            )
        return _Failure(
            Bitrix24TransportError(
                f"connection to {origin(self.base_url)} failed mid-request ({name})",
                code="CONNECTION_ERROR",
                method=method,
                retryable=True,
            ),
            maybe_executed=True,
        )


class _Redirect(Exception):
    def __init__(self, new_origin: str) -> None:
        super().__init__(new_origin)
        self.new_origin = new_origin


def _never_connected(exc: BaseException) -> bool:
    """True when the connection was never established (refused, DNS failure): safe to re-send."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, NewConnectionError | NameResolutionError | ConnectionRefusedError):
            return True
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            current = reason
            continue
        args = getattr(current, "args", ())
        nested = next((a for a in args if isinstance(a, BaseException)), None)
        current = nested or current.__cause__ or current.__context__
    return False


__all__ = ["USER_AGENT", "Bitrix24Client", "ClientStats"]
