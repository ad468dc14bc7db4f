"""Public exception hierarchy of the provider (re-exported from :mod:`airflow_provider_b24.client.errors`).

Every :class:`Bitrix24Error` carries ``code``, ``description``, ``http_status``, ``method`` and
``retryable``. Subclasses::

    Bitrix24Error
    ├── Bitrix24ConfigError (also ValueError)   wrong connection or arguments, before any request
    │   └── Bitrix24ArgumentError               a wrong argument: the base of the ones below
    │       ├── InvalidActivityIds              activity IDs that are not IDs     (activities)
    │       ├── InvalidSelect                   a select that is not field names  (activities)
    │       └── ExportArgumentError             window, filter, format, path      (export)
    ├── ActivityParseError (also ValueError)    the portal sent a value its field type cannot take
    │                                           (activities; permanent: the same row fails again)
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

    ExportCancelled (Exception, not a Bitrix24Error)   the export was stopped by on_kill (export)

The classes marked *(activities)* and *(export)* are defined in and imported from those packages;
an adapter catches all argument errors with one ``except Bitrix24ArgumentError``. ``ExportCancelled``
is deliberately outside the hierarchy: it is neither a fault of Bitrix24 nor of the arguments, but
the task being killed, so no failure policy applies to it (it is raised as it is).

The failure policy every adapter follows is :func:`error_outcome` (one rule: the error's
``retryable``): ``FAIL`` fails the task without Airflow retries, ``RETRY`` polls again or lets Airflow
retry, ``UNEXPECTED`` (not a Bitrix24 error) is raised as it is. Argument and parse errors are never
``retryable``, so they ``FAIL``.
"""

from __future__ import annotations

from airflow_provider_b24.client.errors import (
    Bitrix24AccessDenied,
    Bitrix24ArgumentError,
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
    "Bitrix24ArgumentError",
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
