"""Answer shapes shared by every route and by fault injection: AMC's JSON errors, S3's XML errors.

One place for them so a throttled request, a refused header and a bad body all answer in the exact
format AMC (or S3) uses, whichever module produced the answer.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from amc_pipeline.simulator.state import iso_z, request_id

EXEC_CT = "application/vnd.amcworkflowexecutions.v1+json"
WORKFLOW_CT = "application/vnd.amcworkflows.v1+json"


def amc_error(
    status: int, details: str, content_type: str = EXEC_CT, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        json.dumps({"code": str(status), "details": details}),
        status_code=status,
        media_type=content_type,
        headers=headers,
    )


def amc_json(data: Any, content_type: str = EXEC_CT, status: int = 200) -> Response:
    return Response(json.dumps(data, ensure_ascii=False), status_code=status, media_type=content_type)


def s3_error(code: str, message: str, status: int = 403, extra: dict[str, str] | None = None) -> Response:
    rid = request_id()[:16]
    parts = [f"<Code>{code}</Code>", f"<Message>{message}</Message>"]
    for key, value in (extra or {}).items():
        parts.append(f"<{key}>{value}</{key}>")
    parts.append(f"<RequestId>{rid}</RequestId><HostId>{request_id()}</HostId>")
    body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error>' + "".join(parts) + "</Error>"
    return Response(body, status_code=status, media_type="application/xml")


def expired_response(signed_at: float, ttl: int, now: float) -> Response:
    return s3_error(
        "AccessDenied",
        "Request has expired",
        extra={
            "X-Amz-Expires": str(ttl),
            "Expires": iso_z(signed_at + ttl),
            "ServerTime": iso_z(now),
        },
    )


def parse_bool(value: Any, default: bool = False) -> bool:
    """A query or body flag as AMC reads it: only "true" (any case) is true."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() == "true"


async def json_body(request: Request, content_type: str = EXEC_CT) -> dict[str, Any] | Response:
    """The request's JSON object, or AMC's 400 for a body that is not one."""
    raw = await request.body()
    try:
        body = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return amc_error(400, "Malformed JSON request body", content_type)
    if not isinstance(body, dict):
        return amc_error(400, "Request body must be a JSON object", content_type)
    return body
