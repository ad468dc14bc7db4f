"""Error bodies exactly as the portal sends them.

From the method pages (``crm.activity.*``), the OAuth errors
(https://apidocs.bitrix24.com/settings/oauth/error-codes.html) and the system error codes
(https://apidocs.bitrix24.com/error-codes.html).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ApiError", "legacy"]


class ApiError(Exception):
    """An error answer: HTTP status + ``{"error", "error_description"}`` (+ optional extra keys)."""

    def __init__(self, status: int, error: str, description: str, **extra: Any) -> None:
        super().__init__(f"{status} {error or '(empty)'}: {description}")
        self.status = status
        self.error = error
        self.description = description
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        out: dict[str, Any] = {"error": self.error, "error_description": self.description}
        out.update(self.extra)
        return out

    # System errors (error-codes.html) ---------------------------------------------------------------
    @classmethod
    def https_required(cls) -> ApiError:
        return cls(400, "INVALID_REQUEST", "Https required")

    @classmethod
    def no_auth(cls) -> ApiError:
        return cls(401, "NO_AUTH_FOUND", "Wrong authorization data")

    @classmethod
    def invalid_credentials(cls) -> ApiError:
        return cls(401, "INVALID_CREDENTIALS", "Invalid request credentials")

    @classmethod
    def expired_token(cls) -> ApiError:
        return cls(401, "expired_token", "The access token provided has expired.")

    @classmethod
    def invalid_token(cls) -> ApiError:
        return cls(401, "invalid_token", "Unable to get application by token")

    @classmethod
    def insufficient_scope(cls) -> ApiError:
        return cls(
            401,
            "insufficient_scope",
            "The request requires higher privileges than provided by the webhook token",
        )

    @classmethod
    def query_limit(cls) -> ApiError:
        return cls(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")

    @classmethod
    def overload(cls) -> ApiError:
        return cls(503, "OVERLOAD_LIMIT", "REST API is blocked due to overload")

    @classmethod
    def operation_time_limit(cls, reset_at: int, operating: float) -> ApiError:
        return cls(
            429,
            "OPERATION_TIME_LIMIT",
            "Method is blocked due to operation time limit.",
            time={"operating": operating, "operating_reset_at": reset_at},
        )

    @classmethod
    def method_not_found(cls) -> ApiError:
        return cls(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")

    @classmethod
    def batch_length(cls) -> ApiError:
        return cls(400, "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")

    @classmethod
    def batch_method_not_allowed(cls) -> ApiError:
        return cls(405, "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage")

    @classmethod
    def internal(cls) -> ApiError:
        return cls(500, "INTERNAL_SERVER_ERROR", "Internal server error")


def legacy(description: str) -> ApiError:
    """A legacy CRM method error: HTTP 400, empty ``error``, meaning in ``error_description``."""
    return ApiError(400, "", description)
