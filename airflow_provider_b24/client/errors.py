"""The Bitrix24 exception hierarchy and the one function that classifies a server answer.

Bitrix24 reports errors as ``{"error": "<code>", "error_description": "<text>"}``. The code decides
first (the docs and the official SDKs disagree on several HTTP statuses), the HTTP status second.
Legacy CRM methods (``crm.activity.*``) answer HTTP 400 with an *empty* code and put the meaning only
in the description, so those are classified by text (the system errors and the legacy methods'
texts: https://apidocs.bitrix24.com/error-codes.html and each ``crm.activity.*`` method's page).

Every error carries ``code``, ``description``, ``http_status``, ``method`` and ``retryable``; its text
is built only from those fields (never from a URL or a request body), so it cannot leak a secret.
"""

from __future__ import annotations

import re
import time
from enum import StrEnum
from typing import Any


class Bitrix24Error(Exception):
    """Base class of every error raised by the Bitrix24 client and hook.

    :param code: the ``error`` code the server sent (``""`` for legacy method errors).
    :param description: the ``error_description`` (or a short, secret-free explanation).
    :param http_status: the HTTP status, ``None`` for per-command errors inside a batch.
    :param method: the REST method that failed (e.g. ``crm.activity.get``).
    :param retryable: whether repeating the same request later may succeed.
    """

    #: default for instances of the class; a few codes override it per instance.
    default_retryable: bool = False

    def __init__(
        self,
        description: str = "",
        *,
        code: str = "",
        http_status: int | None = None,
        method: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        self.code = code
        self.description = description
        self.http_status = http_status
        self.method = method
        self.retryable = self.default_retryable if retryable is None else retryable
        super().__init__(self._render())

    def _render(self) -> str:
        head = self.code or (f"HTTP {self.http_status}" if self.http_status else type(self).__name__)
        text = f"{head}: {self.description}" if self.description else head
        where = []
        if self.method:
            where.append(f"method {self.method}")
        if self.http_status and self.code:
            where.append(f"HTTP {self.http_status}")
        return f"{text} ({', '.join(where)})" if where else text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, description={self.description!r}, "
            f"http_status={self.http_status!r}, method={self.method!r}, retryable={self.retryable!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep keyword-only attributes when pickled (Airflow ships exceptions between processes).
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[Bitrix24Error], state: dict[str, Any]) -> Bitrix24Error:
    err = cls.__new__(cls)
    Exception.__init__(err)
    err.__dict__.update(state)
    err.args = (err._render(),)
    return err


class Bitrix24ConfigError(Bitrix24Error, ValueError):
    """A wrong or incomplete connection or argument, detected before any request is sent."""


class Bitrix24ArgumentError(Bitrix24ConfigError):
    """An argument a caller passed is wrong (activity IDs, ``select``, an export window...).

    The one base of the provider's argument errors, so an adapter needs one ``except`` (and the
    failure policy says ``FAIL``: the same arguments fail the same way on every retry). Raised before
    any request; the message is the whole text (it names the value and what was expected).
    """

    def _render(self) -> str:
        return self.description


class Bitrix24BadRequest(Bitrix24Error):
    """The server refused the request as malformed (bad ID, bad filter, batch too long, HTTPS required)."""


class Bitrix24MethodNotFound(Bitrix24BadRequest):
    """The REST method does not exist (typo, or a REST 3.0-only method called on the classic path)."""


class Bitrix24NotFound(Bitrix24Error):
    """The requested entity does not exist (``Not found``, ``Activity is not found``, ``NOT_FOUND``)."""


class Bitrix24AuthError(Bitrix24Error):
    """Credentials are wrong, expired or revoked (webhook code, OAuth token, app installation)."""


class Bitrix24TokenExpired(Bitrix24AuthError):
    """HTTP 401 ``expired_token``: the OAuth access token must be refreshed (the client does it once)."""


class Bitrix24AccessDenied(Bitrix24Error):
    """Authenticated, but not allowed: permissions, plan, app context or user restrictions."""


class Bitrix24InsufficientScope(Bitrix24AccessDenied):
    """The webhook or app lacks a scope the method needs (e.g. ``crm``)."""


class Bitrix24RateLimited(Bitrix24Error):
    """HTTP 503 ``QUERY_LIMIT_EXCEEDED``: the portal's request-rate (leaky bucket) limit was hit."""

    default_retryable = True


class Bitrix24OperationTimeLimit(Bitrix24RateLimited):
    """HTTP 429 ``OPERATION_TIME_LIMIT``: the method's 10-minute execution budget is used up.

    :param reset_at: unix time (seconds) when the server will accept the method again (an estimate
        when the server did not say; see the client docs).
    """

    def __init__(self, description: str = "", *, reset_at: float | None = None, **kwargs: Any) -> None:
        self.reset_at = reset_at
        super().__init__(description, **kwargs)

    def _render(self) -> str:
        text = super()._render()
        return f"{text}; resets at unix time {self.reset_at:.0f}" if self.reset_at else text


class Bitrix24Overloaded(Bitrix24Error):
    """HTTP 503 ``OVERLOAD_LIMIT``: REST is blocked for the portal by hand; only support can lift it."""


class Bitrix24PortalDeleted(Bitrix24Error):
    """``PORTAL_DELETED``: the portal no longer exists (or its public part is closed)."""


class Bitrix24ServerError(Bitrix24Error):
    """A server fault (HTTP 5xx, ``INTERNAL_SERVER_ERROR``, ``ERROR_UNEXPECTED_ANSWER``, HTML error page)."""

    default_retryable = True


class Bitrix24TransportError(Bitrix24Error):
    """The exchange itself failed: connection, TLS, timeout, redirect loop, or an unreadable body."""


# --------------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------------

#: ``error`` code (upper-cased) -> (class, retryable override or None for the class default).
_BY_CODE: dict[str, tuple[type[Bitrix24Error], bool | None]] = {
    # system errors (https://apidocs.bitrix24.com/error-codes.html)
    "INTERNAL_SERVER_ERROR": (Bitrix24ServerError, True),
    "ERROR_UNEXPECTED_ANSWER": (Bitrix24ServerError, True),
    "QUERY_LIMIT_EXCEEDED": (Bitrix24RateLimited, True),
    "OPERATION_TIME_LIMIT": (Bitrix24OperationTimeLimit, True),
    "ERROR_BATCH_METHOD_NOT_ALLOWED": (Bitrix24BadRequest, None),
    "ERROR_BATCH_LENGTH_EXCEEDED": (Bitrix24BadRequest, None),
    "NO_AUTH_FOUND": (Bitrix24AuthError, None),
    "INVALID_REQUEST": (Bitrix24BadRequest, None),
    "OVERLOAD_LIMIT": (Bitrix24Overloaded, None),
    "ACCESS_DENIED": (Bitrix24AccessDenied, None),
    "INVALID_CREDENTIALS": (Bitrix24AuthError, None),
    "ERROR_MANIFEST_IS_NOT_AVAILABLE": (Bitrix24NotFound, None),
    "INSUFFICIENT_SCOPE": (Bitrix24InsufficientScope, None),
    "EXPIRED_TOKEN": (Bitrix24TokenExpired, None),
    "USER_ACCESS_ERROR": (Bitrix24AccessDenied, None),
    "PORTAL_DELETED": (Bitrix24PortalDeleted, None),
    # seen in the official SDKs' error maps
    "INVALID_TOKEN": (Bitrix24AuthError, None),
    "AUTHORIZATION_ERROR": (Bitrix24AuthError, None),
    "APPLICATION_NOT_FOUND": (Bitrix24AuthError, None),
    "ERROR_OAUTH": (Bitrix24AuthError, None),
    "NOT_INSTALLED": (Bitrix24AuthError, None),
    "PAYMENT_REQUIRED": (Bitrix24AccessDenied, None),
    "METHOD_CONFIRM_WAITING": (Bitrix24AccessDenied, None),
    "METHOD_CONFIRM_DENIED": (Bitrix24AccessDenied, None),
    "WRONG_AUTH_TYPE": (Bitrix24AccessDenied, None),
    "ALLOWED_ONLY_INTRANET_USER": (Bitrix24AccessDenied, None),
    "ACCESS_ERROR": (Bitrix24AccessDenied, None),
    "ERROR_WRONG_CONTEXT": (Bitrix24AccessDenied, None),
    "INVALID_ARG_VALUE": (Bitrix24BadRequest, None),
    "ERROR_METHOD_NOT_FOUND": (Bitrix24MethodNotFound, None),
    "NOT_FOUND": (Bitrix24NotFound, None),
    "ERROR_ENTITY_NOT_FOUND": (Bitrix24NotFound, None),
    "OWNER_NOT_FOUND": (Bitrix24NotFound, None),
    "WRONG_DATETIME_FORMAT": (Bitrix24BadRequest, None),
    "100": (Bitrix24BadRequest, None),
    # OAuth authorization server (https://apidocs.bitrix24.com/settings/oauth/error-codes.html)
    "INVALID_GRANT": (Bitrix24AuthError, None),
    "INVALID_CLIENT": (Bitrix24AuthError, None),
    "WRONG_CLIENT": (Bitrix24AuthError, None),
    "INVALID_SCOPE": (Bitrix24AccessDenied, None),
}

_NOT_FOUND = re.compile(r"not\s+found", re.IGNORECASE)
_BAD_ID = re.compile(r"ID is not defined or invalid", re.IGNORECASE)
_ACCESS = re.compile(r"access denied|application context required", re.IGNORECASE)


def _by_status(status: int | None) -> tuple[type[Bitrix24Error], bool | None]:
    if status is None:
        return Bitrix24Error, None
    if status == 401:
        return Bitrix24AuthError, None
    if status == 403:
        return Bitrix24AccessDenied, None
    if status in (404, 410):
        return Bitrix24NotFound, None
    if status == 429:
        return Bitrix24OperationTimeLimit, True
    if status == 503:
        return Bitrix24ServerError, True
    if status >= 500:
        return Bitrix24ServerError, True
    if status >= 400:
        return Bitrix24BadRequest, None
    return Bitrix24Error, None


def classify_error(
    code: Any,
    description: Any,
    *,
    http_status: int | None,
    method: str | None,
    reset_at: float | None = None,
) -> Bitrix24Error:
    """Build the exception for an ``error`` / ``error_description`` pair (code first, status second).

    An empty code (legacy CRM methods, HTTP 400 or a batch's ``result_error``) is classified by the
    description: "not found" in any case -> :class:`Bitrix24NotFound`, "ID is not defined or invalid"
    -> :class:`Bitrix24BadRequest`, "Access denied" -> :class:`Bitrix24AccessDenied`.
    """
    code_text = "" if code is None else str(code)
    desc_text = "" if description is None else str(description)
    cls: type[Bitrix24Error]
    retryable: bool | None
    if code_text:
        cls, retryable = _BY_CODE.get(code_text.upper(), _by_status(http_status))
    elif _BAD_ID.search(desc_text):
        cls, retryable = Bitrix24BadRequest, None
    elif _NOT_FOUND.search(desc_text):
        cls, retryable = Bitrix24NotFound, None
    elif _ACCESS.search(desc_text):
        cls, retryable = Bitrix24AccessDenied, None
    else:
        cls, retryable = _by_status(http_status)
        if cls is Bitrix24Error and http_status is None:
            # A batch command error with no code and an unknown text: the server refused it.
            cls = Bitrix24BadRequest
    kwargs: dict[str, Any] = {
        "code": code_text,
        "http_status": http_status,
        "method": method,
        "retryable": retryable,
    }
    if issubclass(cls, Bitrix24OperationTimeLimit):
        return cls(desc_text, reset_at=reset_at, **kwargs)
    return cls(desc_text, **kwargs)


# --------------------------------------------------------------------------------------------------
# The failure policy: one rule for every adapter (operators, sensor, triggers)
# --------------------------------------------------------------------------------------------------


class ErrorOutcome(StrEnum):
    """What an Airflow adapter does with an error that reached it (after the client's own retries)."""

    #: Repeating the work cannot succeed (bad credentials, missing scope, not found, a bad request, a
    #: manual block, a TLS certificate the machine does not trust...): fail now, without Airflow retries.
    FAIL = "fail"
    #: A transient Bitrix24 error that outlived the client's retries (rate limit, 5xx, network): poll
    #: again later (sensor, trigger) or let Airflow's ``retries`` run the task again (operators).
    RETRY = "retry"
    #: Not a Bitrix24 error (a bug, a missing Airflow connection...): raised as it is by a task (so
    #: Airflow's ``retries`` apply); a trigger ends with an error event instead of polling forever.
    UNEXPECTED = "unexpected"


def error_outcome(error: BaseException) -> ErrorOutcome:
    """The failure policy: the client's ``retryable`` verdict decides, for every adapter alike."""
    if not isinstance(error, Bitrix24Error):
        return ErrorOutcome.UNEXPECTED
    return ErrorOutcome.RETRY if error.retryable else ErrorOutcome.FAIL


def is_permanent(error: BaseException) -> bool:
    """``True`` for a Bitrix24 error that retrying cannot fix (see :func:`error_outcome`)."""
    return error_outcome(error) is ErrorOutcome.FAIL


#: Seconds to wait past a 429's ``operating_reset_at`` (the portal reports whole seconds).
OPERATING_RESET_MARGIN_S: float = 1.0


def seconds_until_retry(error: BaseException, interval: float, *, now: float | None = None) -> float:
    """How long to wait before asking again after a transient ``error``: ``interval``, or longer for a
    429 ``OPERATION_TIME_LIMIT`` (until its ``reset_at`` plus :data:`OPERATING_RESET_MARGIN_S`)."""
    if isinstance(error, Bitrix24OperationTimeLimit) and error.reset_at:
        current = time.time() if now is None else now
        return max(float(interval), float(error.reset_at) - current + OPERATING_RESET_MARGIN_S)
    return float(interval)


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
