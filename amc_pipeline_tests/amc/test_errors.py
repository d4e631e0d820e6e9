"""The classification table: which HTTP answers and failure reasons become which error type.

Why a table: the monitor decides retry-or-final from the type alone, so every row here is a
decision about whether an execution is resubmitted. Rows come from amc-api.md and the recorded
live responses.
"""

import pickle

import pytest

from amc_pipeline.amc.errors import (
    FINAL_TYPES,
    RETRYABLE_TYPES,
    AmbiguousCreateError,
    AmcAuthError,
    AmcError,
    ErrorType,
    classify_failure_reason,
    classify_http,
    error_text,
)

SQL_ERROR = (
    "Unable to compile the query: From line 1, column 15 to line 1, column 29: Object 'dsp_impressionz' not found"
)

HTTP_CASES = [
    # (status, body, expected)
    (400, {"code": "400", "details": SQL_ERROR}, ErrorType.QUERY),
    (400, {"code": "400", "details": "Invalid input: timeWindowStart must not contain a time zone"}, ErrorType.QUERY),
    (400, {"code": "400", "details": "Daily execution quota exceeded for this instance"}, ErrorType.RESOURCE),
    (400, {"code": "400", "details": "Too many concurrent executions"}, ErrorType.RESOURCE),
    (400, None, ErrorType.QUERY),
    (401, {"code": "401", "details": "Not authenticated"}, ErrorType.AUTHENTICATION),
    (401, {"message": "Unauthorized"}, ErrorType.AUTHENTICATION),
    (403, {"code": "403", "details": "Forbidden"}, ErrorType.PERMISSION),
    (403, "<html>Access Denied</html>", ErrorType.PERMISSION),
    (404, {"code": "404", "details": "Execution not found"}, ErrorType.AMC_API),
    (404, {"code": "404", "details": "You do not have permission to access this instance"}, ErrorType.PERMISSION),
    (422, {"code": "422", "details": "Invalid value for parameter sortAscending"}, ErrorType.QUERY),
    (429, {"code": "429", "details": "Too Many Requests"}, ErrorType.RESOURCE),
    (429, None, ErrorType.RESOURCE),
    (500, {"code": "500", "details": "Internal server error, retry later"}, ErrorType.AMC_API),
    (500, {"message": "Endpoint request timed out"}, ErrorType.TIMEOUT),
    (502, "<html><body>Bad Gateway</body></html>", ErrorType.AMC_API),
    (503, {"message": "Service Unavailable"}, ErrorType.AMC_API),
    (504, {"message": "Endpoint request timed out"}, ErrorType.TIMEOUT),
    (504, None, ErrorType.TIMEOUT),
    (418, {"details": "teapot"}, ErrorType.UNKNOWN),
]


@pytest.mark.parametrize(("status", "body", "expected"), HTTP_CASES)
def test_classify_http_table(status, body, expected):
    assert classify_http(status, body) is expected


REASON_CASES = [
    (None, ErrorType.AMC_API),
    ("", ErrorType.AMC_API),
    (SQL_ERROR, ErrorType.QUERY),
    ("Syntax error at line 3", ErrorType.QUERY),
    ("Column 'foo' cannot be resolved", ErrorType.QUERY),
    ("Query execution timed out after 21600 seconds", ErrorType.TIMEOUT),
    ("Workflow execution timeout reached", ErrorType.TIMEOUT),
    ("Access denied to dataset amazon_attributed_events", ErrorType.PERMISSION),
    ("User is not authorized to run this workflow", ErrorType.PERMISSION),
    ("Daily quota of executions exceeded", ErrorType.RESOURCE),
    ("Insufficient capacity, please retry", ErrorType.RESOURCE),
    ("Internal service error", ErrorType.AMC_API),
    ("Service unavailable, retry", ErrorType.AMC_API),
    ("Something odd happened", ErrorType.UNKNOWN),
]


@pytest.mark.parametrize(("reason", "expected"), REASON_CASES)
def test_classify_failure_reason_table(reason, expected):
    assert classify_failure_reason(reason) is expected


def test_error_text_prefers_details_then_message():
    assert error_text({"code": "400", "details": "d", "message": "m"}) == "d"
    assert error_text({"message": "Endpoint request timed out"}) == "Endpoint request timed out"
    assert error_text({"error": "invalid_grant", "error_description": "bad"}) == "bad"
    assert error_text("x" * 1000) == "x" * 500
    assert error_text(["not", "an", "object"]) == ""


def test_retryable_and_final_types_partition_the_failures():
    assert RETRYABLE_TYPES.isdisjoint(FINAL_TYPES)
    assert AmcError("x", error_type=ErrorType.NETWORK).retryable
    assert not AmcError("x", error_type=ErrorType.QUERY).retryable


@pytest.mark.parametrize("cls", [AmcError, AmcAuthError, AmbiguousCreateError])
def test_errors_keep_fields_through_pickle(cls):
    err = cls(
        "boom",
        error_type=ErrorType.TIMEOUT,
        status_code=504,
        details="Endpoint request timed out",
        request_id="req-123",
        retry_after=2.0,
    )
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is cls
    assert (copy.error_type, copy.status_code, copy.details, copy.request_id, copy.retry_after) == (
        ErrorType.TIMEOUT,
        504,
        "Endpoint request timed out",
        "req-123",
        2.0,
    )
    assert "request_id=req-123" in str(copy) and "http=504" in str(copy)
