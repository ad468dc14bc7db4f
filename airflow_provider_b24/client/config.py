"""Client settings and the validation of connection fields (portal URL, webhook, OAuth, extras).

Nothing here imports Airflow: the hook hands plain values (host, login, password, port, schema,
extra dict) to :func:`settings_from_fields`, which either returns complete settings or raises
:class:`Bitrix24ConfigError` naming the field and what was expected - before any request is sent.
Extras may arrive as strings (the UI form stores text), so numbers and booleans are coerced.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from airflow_provider_b24.client.errors import Bitrix24ConfigError

DEFAULT_OAUTH_SERVER = "https://oauth.bitrix.info"
_WEBHOOK_PATH = re.compile(r"^/rest/(?P<user>[^/]+)/(?P<code>[^/]+)/?$")
_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


@dataclass(frozen=True)
class ClientConfig:
    """Tunables of one client (all have the documented cloud defaults).

    :param timeout: seconds per HTTP request (the cloud cuts requests off after 60 s).
    :param connect_timeout: seconds to establish a connection (a short one fails fast on a dead host).
    :param max_retries: retries of transient failures inside one call (503, 5xx, network).
    :param rate_limit: leaky-bucket drain rate in requests/s shared by all clients of the portal in
        this process; ``0`` turns the limiter off (on-premise portals without limits).
    :param burst: leaky-bucket capacity (50 on cloud plans, 250 on Enterprise).
    :param operating_max_wait: wait at most this long (s) for a 429 ``OPERATION_TIME_LIMIT`` to reset;
        a later reset raises :class:`Bitrix24OperationTimeLimit` with ``reset_at``.
    :param operating_budget: the portal's per-method execution budget per 10 minutes (480 s on cloud);
        the client slows down from 80 % of it and pauses at the budget.
    :param verify: TLS verification: ``True``, ``False`` or the path of a CA bundle.
    :param backoff_base: first retry delay (s); doubles per retry, capped at ``backoff_max``.
    :param backoff_max: longest single retry delay (s).
    :param max_redirects: portal moves (302) followed inside one call.
    :param pages_per_request: list pages chained into one batch by :meth:`Bitrix24Client.iter_list` (≤ 50).
    """

    timeout: float = 60.0
    connect_timeout: float = 10.0
    max_retries: int = 5
    rate_limit: float = 2.0
    burst: int = 50
    operating_max_wait: float = 60.0
    operating_budget: float = 480.0
    verify: bool | str = True
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    max_redirects: int = 3
    pages_per_request: int = 50

    def __post_init__(self) -> None:
        _positive("timeout", self.timeout)
        _positive("connect_timeout", self.connect_timeout)
        _non_negative("max_retries", self.max_retries)
        _non_negative("rate_limit", self.rate_limit)
        if self.burst < 1:
            raise Bitrix24ConfigError(f"burst must be an integer >= 1, got {self.burst!r}")
        _non_negative("operating_max_wait", self.operating_max_wait)
        _positive("operating_budget", self.operating_budget)
        _non_negative("backoff_base", self.backoff_base)
        _non_negative("backoff_max", self.backoff_max)
        if not 1 <= self.pages_per_request <= 50:
            raise Bitrix24ConfigError(f"pages_per_request must be 1..50, got {self.pages_per_request!r}")


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise Bitrix24ConfigError(f"{name} must be a number > 0, got {value!r}")


def _non_negative(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise Bitrix24ConfigError(f"{name} must be a number >= 0, got {value!r}")


# --------------------------------------------------------------------------------------------------
# Field coercion
# --------------------------------------------------------------------------------------------------


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def coerce_number(name: str, value: Any, default: float, *, minimum: float = 0.0) -> float:
    """A number from a JSON number or a form string; blank -> ``default``."""
    if _blank(value):
        return default
    if isinstance(value, bool):
        raise Bitrix24ConfigError(f"extra {name} must be a number, got a boolean")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise Bitrix24ConfigError(f"extra {name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < minimum:
        raise Bitrix24ConfigError(f"extra {name} must be a number >= {minimum:g}, got {value!r}")
    return number


def coerce_int(name: str, value: Any, default: int, *, minimum: int = 0) -> int:
    """An integer from a JSON number or a form string (``"5"``, ``"5.0"``); blank -> ``default``."""
    number = coerce_number(name, value, float(default), minimum=minimum)
    if number != int(number):
        raise Bitrix24ConfigError(f"extra {name} must be a whole number, got {value!r}")
    return int(number)


def coerce_verify(value: Any) -> bool | str:
    """``verify``: a boolean, ``"true"``/``"false"`` (and friends), or an existing CA bundle path."""
    if _blank(value):
        return True
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        if os.path.exists(text):
            return text
        raise Bitrix24ConfigError(
            f"extra verify must be true, false or the path of a CA bundle; {text!r} is not a file"
        )
    raise Bitrix24ConfigError(f"extra verify must be true, false or a CA bundle path, got {value!r}")


def config_from_extra(extra: Mapping[str, Any]) -> ClientConfig:
    """Build :class:`ClientConfig` from connection extras (strings from the UI are coerced)."""
    defaults = ClientConfig()
    timeout = coerce_number("timeout", extra.get("timeout"), defaults.timeout)
    if timeout <= 0:
        raise Bitrix24ConfigError(f"extra timeout must be a number > 0, got {extra.get('timeout')!r}")
    rate = coerce_number("rate_limit", extra.get("rate_limit"), defaults.rate_limit)
    budget = coerce_number("operating_budget", extra.get("operating_budget"), defaults.operating_budget)
    if budget <= 0:
        raise Bitrix24ConfigError(
            f"extra operating_budget must be > 0, got {extra.get('operating_budget')!r}"
        )
    return ClientConfig(
        timeout=timeout,
        connect_timeout=min(defaults.connect_timeout, timeout),
        max_retries=coerce_int("max_retries", extra.get("max_retries"), defaults.max_retries),
        rate_limit=rate,
        burst=coerce_int("burst", extra.get("burst"), defaults.burst, minimum=1),
        operating_max_wait=coerce_number(
            "operating_max_wait", extra.get("operating_max_wait"), defaults.operating_max_wait
        ),
        operating_budget=budget,
        verify=coerce_verify(extra.get("verify")),
    )


# --------------------------------------------------------------------------------------------------
# Portal URL and webhook URL
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PortalURL:
    """A validated portal base URL (``scheme://host[:port]``, no path)."""

    base_url: str
    insecure: bool  # plain http:// was written explicitly


def parse_portal_url(
    host: Any, *, port: Any = None, schema: Any = None, field_name: str = "host"
) -> PortalURL:
    """Validate the connection's portal URL: scheme optional (https default), no path or query.

    ``http://`` is honoured only when written in the host (or as the connection schema), for
    on-premise portals and the emulator; callers should warn about it.
    """
    if _blank(host):
        raise Bitrix24ConfigError(
            f"{field_name} is empty: set it to the portal URL, e.g. https://example.bitrix24.com"
        )
    text = str(host).strip()
    scheme_given = "://" in text
    if not scheme_given:
        schema_text = "" if _blank(schema) else str(schema).strip().lower()
        scheme = schema_text if schema_text in ("http", "https") else "https"
        text = f"{scheme}://{text}"
    try:
        parts = urlsplit(text)
        parsed_port = parts.port
    except ValueError:
        raise Bitrix24ConfigError(
            f"{field_name} is not a valid URL: expected https://<portal host>"
        ) from None
    if parts.scheme not in ("http", "https"):
        raise Bitrix24ConfigError(
            f"{field_name} must use https:// (or http:// for on-premise portals), got {parts.scheme}://"
        )
    if not parts.hostname:
        raise Bitrix24ConfigError(f"{field_name} has no host name: expected https://<portal host>")
    if parts.username or parts.password:
        raise Bitrix24ConfigError(f"{field_name} must not contain credentials; use login/password")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise Bitrix24ConfigError(
            f"{field_name} must be the portal URL without a path (e.g. https://{parts.hostname}); "
            "put a full incoming-webhook URL in the extra field webhook_url instead"
        )
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if parsed_port is not None:
        netloc = f"{netloc}:{parsed_port}"
    elif not _blank(port) and port != 0:
        try:
            port_number = int(port)
        except (TypeError, ValueError):
            raise Bitrix24ConfigError(f"port must be an integer, got {port!r}") from None
        if not 0 < port_number < 65536:
            raise Bitrix24ConfigError(f"port must be 1..65535, got {port!r}")
        netloc = f"{netloc}:{port_number}"
    return PortalURL(base_url=f"{parts.scheme}://{netloc.lower()}", insecure=parts.scheme == "http")


@dataclass(frozen=True)
class WebhookParts:
    """The pieces of ``https://<portal>/rest/<user_id>/<code>/``."""

    portal: PortalURL
    user_id: str
    code: str = field(repr=False)


def validate_user_id(value: Any, field_name: str = "login") -> str:
    """A webhook's user ID: a positive integer (as text)."""
    text = "" if value is None else str(value).strip()
    if not text:
        raise Bitrix24ConfigError(
            f"{field_name} (the webhook's user ID) is empty: expected a number such as 1"
        )
    # ASCII digits only: str.isdigit() also accepts superscripts and other scripts' digits.
    if not re.fullmatch(r"[0-9]+", text) or int(text) <= 0:
        raise Bitrix24ConfigError(
            f"{field_name} (the webhook's user ID) must be a positive integer, got {text!r}"
        )
    return str(int(text))


def validate_webhook_code(value: Any, field_name: str = "password") -> str:
    """A webhook code: non-empty, one path segment, no whitespace (its value is never echoed)."""
    text = "" if value is None else str(value).strip()
    if not text:
        raise Bitrix24ConfigError(f"{field_name} (the webhook code) is empty")
    if re.search(r"[\s/?#]", text):
        raise Bitrix24ConfigError(
            f"{field_name} (the webhook code) must be one path segment without '/', '?', '#' or spaces"
        )
    return text


def parse_webhook_url(url: Any) -> WebhookParts:
    """Split a full webhook URL; the shape must be ``https://<portal>/rest/<numeric user>/<code>/``."""
    if _blank(url):
        raise Bitrix24ConfigError("extra webhook_url is empty")
    text = str(url).strip()
    if "://" not in text:
        text = f"https://{text}"
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. "Invalid IPv6 URL" for a stray "["; the URL itself is a secret
        raise Bitrix24ConfigError(
            "extra webhook_url is not a valid URL: expected https://<portal>/rest/<user_id>/<code>/"
        ) from None
    match = _WEBHOOK_PATH.match(parts.path)
    if not match or parts.query or parts.fragment:
        raise Bitrix24ConfigError(
            "extra webhook_url must look like https://<portal>/rest/<user_id>/<code>/ "
            "(no method name, query or fragment)"
        )
    try:
        portal = parse_portal_url(f"{parts.scheme}://{parts.netloc}", field_name="webhook_url")
    except Bitrix24ConfigError as exc:
        raise Bitrix24ConfigError(exc.description) from None
    user_id = validate_user_id(match["user"], "webhook_url user ID")
    code = validate_webhook_code(match["code"], "webhook_url code")
    return WebhookParts(portal=portal, user_id=user_id, code=code)


# --------------------------------------------------------------------------------------------------
# Whole connection
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OAuthSettings:
    """OAuth fields of a connection (tokens are seeds; a token store may hold newer ones)."""

    client_id: str
    client_secret: str = field(repr=False)
    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    oauth_server: str = DEFAULT_OAUTH_SERVER


@dataclass(frozen=True)
class ConnectionSettings:
    """Everything a client needs, validated: portal, auth kind and its fields, tunables."""

    portal: PortalURL
    auth_type: Literal["webhook", "oauth"]
    config: ClientConfig
    user_id: str | None = None
    webhook_code: str | None = field(default=None, repr=False)
    oauth: OAuthSettings | None = None

    @property
    def secrets(self) -> list[str]:
        """Every secret value in these settings (for masking)."""
        values = [self.webhook_code]
        if self.oauth:
            values += [self.oauth.client_secret, self.oauth.access_token, self.oauth.refresh_token]
        return [v for v in values if v]


def _text(extra: Mapping[str, Any], key: str) -> str | None:
    value = extra.get(key)
    return None if _blank(value) else str(value).strip()


def settings_from_fields(
    *,
    host: Any,
    login: Any = None,
    password: Any = None,
    port: Any = None,
    schema: Any = None,
    extra: Mapping[str, Any] | None = None,
) -> ConnectionSettings:
    """Validate an Airflow-style connection (plain values) into :class:`ConnectionSettings`.

    Webhook: ``host`` + ``login`` (user ID) + ``password`` (code), or extra ``webhook_url``.
    OAuth: extra ``auth_type="oauth"``, ``client_id``, ``client_secret``, ``access_token``,
    ``refresh_token`` (either token may be missing when a token store holds a pair), ``oauth_server``.
    """
    extra = dict(extra or {})
    raw_auth = extra.get("auth_type")
    auth_type = "webhook" if _blank(raw_auth) else str(raw_auth).strip().lower()
    if auth_type not in ("webhook", "oauth"):
        raise Bitrix24ConfigError(
            f"extra auth_type {raw_auth!r} is not supported: expected 'webhook' or 'oauth'"
        )
    config = config_from_extra(extra)

    if auth_type == "webhook":
        webhook_url = extra.get("webhook_url")
        if not _blank(webhook_url):
            parts = parse_webhook_url(webhook_url)
            if not _blank(host):
                portal = parse_portal_url(host, port=port, schema=schema)
                if (
                    portal.base_url != parts.portal.base_url
                    and urlsplit(portal.base_url).hostname != urlsplit(parts.portal.base_url).hostname
                ):
                    raise Bitrix24ConfigError(
                        "host and extra webhook_url name different portals: "
                        f"{portal.base_url} vs {parts.portal.base_url}; keep only one"
                    )
            return ConnectionSettings(
                portal=parts.portal,
                auth_type="webhook",
                config=config,
                user_id=parts.user_id,
                webhook_code=parts.code,
            )
        portal = parse_portal_url(host, port=port, schema=schema)
        if _blank(login) and _blank(password) and not _blank(extra.get("client_id")):
            raise Bitrix24ConfigError(
                "login and password (webhook user ID and code) are empty but client_id is set: "
                "set extra auth_type to 'oauth' for an OAuth connection"
            )
        return ConnectionSettings(
            portal=portal,
            auth_type="webhook",
            config=config,
            user_id=validate_user_id(login),
            webhook_code=validate_webhook_code(password),
        )

    portal = parse_portal_url(host, port=port, schema=schema)
    client_id = _text(extra, "client_id")
    client_secret = _text(extra, "client_secret")
    if not client_id:
        raise Bitrix24ConfigError("extra client_id is empty: OAuth needs the application's client_id")
    if not client_secret:
        raise Bitrix24ConfigError("extra client_secret is empty: OAuth needs the application's client_secret")
    oauth_server_text = _text(extra, "oauth_server") or DEFAULT_OAUTH_SERVER
    oauth_server = parse_portal_url(oauth_server_text, field_name="oauth_server").base_url
    return ConnectionSettings(
        portal=portal,
        auth_type="oauth",
        config=config,
        oauth=OAuthSettings(
            client_id=client_id,
            client_secret=client_secret,
            access_token=_text(extra, "access_token"),
            refresh_token=_text(extra, "refresh_token"),
            oauth_server=oauth_server,
        ),
    )


__all__ = [
    "DEFAULT_OAUTH_SERVER",
    "ClientConfig",
    "ConnectionSettings",
    "OAuthSettings",
    "PortalURL",
    "WebhookParts",
    "coerce_int",
    "coerce_number",
    "coerce_verify",
    "config_from_extra",
    "parse_portal_url",
    "parse_webhook_url",
    "settings_from_fields",
    "validate_user_id",
    "validate_webhook_code",
]
