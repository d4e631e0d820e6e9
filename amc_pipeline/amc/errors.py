"""Classification of AMC API failures into the error types the original system used.

Why a closed set: the monitor decides from the type alone whether a failure is retried (NETWORK,
TIMEOUT, AMC_API, RESOURCE) or final (QUERY, PERMISSION, AUTHENTICATION), and the UI groups error
rates by it. Keep AMC's own words (`details`/`message`) and the `x-amz-request-id`, which is what
Amazon support asks for.
"""

from __future__ import annotations

import enum
import re
from typing import Any


class ErrorType(enum.StrEnum):
    AUTHENTICATION = "AUTHENTICATION"
    PERMISSION = "PERMISSION"
    QUERY = "QUERY"
    RESOURCE = "RESOURCE"
    NETWORK = "NETWORK"
    TIMEOUT = "TIMEOUT"
    AMC_API = "AMC_API"
    UNKNOWN = "UNKNOWN"


#: Failures worth a new attempt of an execution; the rest are final.
RETRYABLE_TYPES = frozenset({ErrorType.AMC_API, ErrorType.NETWORK, ErrorType.RESOURCE, ErrorType.TIMEOUT})
FINAL_TYPES = frozenset({ErrorType.QUERY, ErrorType.PERMISSION, ErrorType.AUTHENTICATION})

_QUERY_HINTS = re.compile(
    r"unable to compile|syntax error|not found|sql|query|column|table|parse", re.IGNORECASE
)
_RESOURCE_HINTS = re.compile(r"quota|limit|capacity|resource|too many|throttl", re.IGNORECASE)
_TIMEOUT_HINTS = re.compile(r"timed out|timeout", re.IGNORECASE)


def error_text(body: Any) -> str:
    """AMC's human text from an error body: `details` (service) or `message` (gateway)."""
    if isinstance(body, dict):
        for key in ("details", "message", "error_description", "error", "failureReason", "statusReason"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    if isinstance(body, str):
        return body[:500]
    return ""


def classify_http(status_code: int, body: Any = None) -> ErrorType:
    """Map an HTTP status (and AMC's error text) to an error type."""
    text = error_text(body)
    if status_code == 401:
        return ErrorType.AUTHENTICATION
    if status_code == 403:
        return ErrorType.PERMISSION
    if status_code == 404:
        # AMC answers 404 both for unknown ids and for missing permission on an instance.
        return ErrorType.PERMISSION if "permission" in text.lower() else ErrorType.AMC_API
    if status_code in (400, 422):
        if _RESOURCE_HINTS.search(text) and not _QUERY_HINTS.search(text):
            return ErrorType.RESOURCE
        return ErrorType.QUERY
    if status_code == 429:
        return ErrorType.RESOURCE
    if status_code == 504 or (status_code >= 500 and _TIMEOUT_HINTS.search(text)):
        return ErrorType.TIMEOUT
    if status_code >= 500:
        return ErrorType.AMC_API
    return ErrorType.UNKNOWN


def classify_failure_reason(reason: str | None) -> ErrorType:
    """Type of an execution that AMC reports FAILED/REJECTED, from its failure reason text."""
    if not reason:
        return ErrorType.AMC_API
    if _TIMEOUT_HINTS.search(reason):
        return ErrorType.TIMEOUT
    if re.search(r"permission|access denied|not authori[sz]ed|forbidden", reason, re.IGNORECASE):
        return ErrorType.PERMISSION
    if _QUERY_HINTS.search(reason):
        return ErrorType.QUERY
    if _RESOURCE_HINTS.search(reason):
        return ErrorType.RESOURCE
    if re.search(r"internal|service|unavailable|retry", reason, re.IGNORECASE):
        return ErrorType.AMC_API
    return ErrorType.UNKNOWN


class AmcError(Exception):
    """Any failure talking to AMC. Carries the type, AMC's text and the request id; never secrets."""

    def __init__(
        self,
        message: str,
        *,
        error_type: ErrorType = ErrorType.UNKNOWN,
        status_code: int | None = None,
        details: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.status_code = status_code
        self.details = details
        self.request_id = request_id
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.error_type in RETRYABLE_TYPES

    def __str__(self) -> str:
        parts = [super().__str__(), f"type={self.error_type.value}"]
        if self.status_code is not None:
            parts.append(f"http={self.status_code}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        return " ".join(parts)

    def __reduce__(self):  # keep pickling (Dagster serializes errors) working with keyword args
        return (
            _rebuild_error,
            (type(self), super().__str__(), self.error_type, self.status_code, self.details,
             self.request_id, self.retry_after),
        )


def _rebuild_error(cls, message, error_type, status_code, details, request_id, retry_after):
    return cls(
        message,
        error_type=error_type,
        status_code=status_code,
        details=details,
        request_id=request_id,
        retry_after=retry_after,
    )


class AmcAuthError(AmcError):
    """The token endpoint refused the credentials (invalid_grant, invalid_client)."""


class AmbiguousCreateError(AmcError):
    """A create whose outcome is unknown (timeout, dropped connection, 5xx).

    The execution may or may not exist at AMC. Never retry the POST blindly: list the instance's
    executions, adopt a match, and only create again when none exists.
    """
