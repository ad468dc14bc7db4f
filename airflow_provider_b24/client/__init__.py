"""A Bitrix24 REST client with no Airflow imports: auth, limits, retries, batch and pagination.

>>> from airflow_provider_b24.client import Bitrix24Client, WebhookAuth
>>> client = Bitrix24Client("https://example.bitrix24.com", WebhookAuth(user_id="1", code="..."))
>>> client.call("crm.activity.get", {"id": 999})  # doctest: +SKIP
"""

from __future__ import annotations

from airflow_provider_b24.client.auth import MemoryTokenStore, OAuthAuth, TokenPair, TokenStore, WebhookAuth
from airflow_provider_b24.client.batch import BatchResult
from airflow_provider_b24.client.client import USER_AGENT, Bitrix24Client, ClientStats
from airflow_provider_b24.client.config import (
    ClientConfig,
    ConnectionSettings,
    OAuthSettings,
    parse_portal_url,
    parse_webhook_url,
    settings_from_fields,
)
from airflow_provider_b24.client.encoding import ResultRef, php_query
from airflow_provider_b24.client.errors import (
    Bitrix24AccessDenied,
    Bitrix24AuthError,
    Bitrix24BadRequest,
    Bitrix24ConfigError,
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
)
from airflow_provider_b24.client.limiter import DEFAULT_REGISTRY, LimiterRegistry, SystemClock
from airflow_provider_b24.client.retry import is_read_method


def client_from_settings(settings: ConnectionSettings, **kwargs: object) -> Bitrix24Client:
    """Build a client from validated webhook settings (OAuth needs a token store: use the hook)."""
    if settings.auth_type != "webhook" or not settings.user_id or not settings.webhook_code:
        raise Bitrix24ConfigError(
            "client_from_settings builds webhook clients only; build OAuthAuth yourself"
        )
    auth = WebhookAuth(user_id=settings.user_id, code=settings.webhook_code)
    return Bitrix24Client(settings.portal.base_url, auth, settings.config, **kwargs)  # type: ignore[arg-type]


__all__ = [
    "DEFAULT_REGISTRY",
    "USER_AGENT",
    "BatchResult",
    "Bitrix24AccessDenied",
    "Bitrix24AuthError",
    "Bitrix24BadRequest",
    "Bitrix24Client",
    "Bitrix24ConfigError",
    "Bitrix24Error",
    "Bitrix24InsufficientScope",
    "Bitrix24MethodNotFound",
    "Bitrix24NotFound",
    "Bitrix24OperationTimeLimit",
    "Bitrix24Overloaded",
    "Bitrix24PortalDeleted",
    "Bitrix24RateLimited",
    "Bitrix24ServerError",
    "Bitrix24TokenExpired",
    "Bitrix24TransportError",
    "ClientConfig",
    "ClientStats",
    "ConnectionSettings",
    "LimiterRegistry",
    "MemoryTokenStore",
    "OAuthAuth",
    "OAuthSettings",
    "ResultRef",
    "SystemClock",
    "TokenPair",
    "TokenStore",
    "WebhookAuth",
    "client_from_settings",
    "is_read_method",
    "parse_portal_url",
    "parse_webhook_url",
    "php_query",
    "settings_from_fields",
]
