"""Public exception hierarchy of the provider (re-exported from :mod:`airflow_provider_b24.client.errors`).

Every :class:`Bitrix24Error` carries ``code``, ``description``, ``http_status``, ``method`` and
``retryable``. Subclasses::

    Bitrix24Error
    ├── Bitrix24ConfigError (also ValueError)   wrong connection or arguments, before any request
    ├── Bitrix24BadRequest                      bad ID/filter, batch too long, HTTPS required
    │   └── Bitrix24MethodNotFound
    ├── Bitrix24NotFound                        "Not found", "Activity is not found", NOT_FOUND
    ├── Bitrix24AuthError                       bad webhook code / token, invalid_grant, app not installed
    │   └── Bitrix24TokenExpired                401 expired_token (refreshed once automatically)
    ├── Bitrix24AccessDenied                    permissions, plan, app context
    │   └── Bitrix24InsufficientScope
    ├── Bitrix24RateLimited                     503 QUERY_LIMIT_EXCEEDED (retried)
    │   └── Bitrix24OperationTimeLimit          429 OPERATION_TIME_LIMIT, with reset_at (unix s)
    ├── Bitrix24Overloaded                      503 OVERLOAD_LIMIT (manual block; not retried)
    ├── Bitrix24PortalDeleted
    ├── Bitrix24ServerError                     5xx, INTERNAL_SERVER_ERROR, HTML error pages (retried)
    └── Bitrix24TransportError                  connection, TLS, timeout, unreadable body

The failure policy every adapter follows is :func:`error_outcome` (one rule: the error's
``retryable``): ``FAIL`` fails the task without Airflow retries, ``RETRY`` polls again or lets Airflow
retry, ``UNEXPECTED`` (not a Bitrix24 error) is raised as it is.
"""

from __future__ import annotations

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
    ErrorOutcome,
    classify_error,
    error_outcome,
    is_permanent,
    seconds_until_retry,
)

__all__ = [
    "Bitrix24AccessDenied",
    "Bitrix24AuthError",
    "Bitrix24BadRequest",
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
    "ErrorOutcome",
    "classify_error",
    "error_outcome",
    "is_permanent",
    "seconds_until_retry",
]
