"""What AMC accepts in a request: the create body of an execution and the list call's times.

Kept apart from the transport because callers (the monitor, tests, benchmarks) build bodies
without a client, and because AMC is strict about them: window bounds without `Z` or offset,
a timeout within 900..86400 seconds, exactly one of `workflowId` and `workflow`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from amc_pipeline.amc.models import format_window_time

#: AMC's bounds for workflowExecutionTimeoutSeconds.
MIN_EXECUTION_TIMEOUT = 900
MAX_EXECUTION_TIMEOUT = 86400
#: AMC's page size limit for list calls.
MAX_PAGE_SIZE = 100


def execution_body(
    *,
    workflow_id: str,
    sql: str | None = None,
    window_start: datetime,
    window_end: datetime,
    time_zone: str,
    timeout_seconds: int | float,
    parameter_values: dict[str, Any] | None = None,
    ignore_data_gaps: bool = False,
) -> dict[str, Any]:
    """The POST body of a workflow execution over an EXPLICIT time window.

    With `sql` the execution is ad hoc (`workflow: {workflowId, sqlQuery}`), without it it runs the
    saved workflow `workflow_id`. Window bounds are wall times in `time_zone`, formatted without `Z`
    or offset (AMC rejects or misreads those): naive datetimes are taken as already in `time_zone`,
    aware ones are converted to it first. The timeout is clamped to AMC's 900..86400 seconds.
    """
    if not workflow_id:
        raise ValueError("execution_body needs a workflow_id")
    zone = ZoneInfo(time_zone)

    def local(value: datetime) -> datetime:
        return value.astimezone(zone).replace(tzinfo=None) if value.tzinfo is not None else value

    start, end = local(window_start), local(window_end)
    if end <= start:
        raise ValueError(f"window end {end.isoformat()} is not after window start {start.isoformat()}")
    body: dict[str, Any] = {}
    if sql is not None and sql.strip():
        body["workflow"] = {"workflowId": workflow_id, "sqlQuery": sql}
    else:
        body["workflowId"] = workflow_id
    body.update(
        {
            "timeWindowType": "EXPLICIT",
            "timeWindowStart": format_window_time(start),
            "timeWindowEnd": format_window_time(end),
            "timeWindowTimeZone": time_zone,
            "workflowExecutionTimeoutSeconds": max(
                MIN_EXECUTION_TIMEOUT, min(MAX_EXECUTION_TIMEOUT, int(timeout_seconds))
            ),
            "parameterValues": dict(parameter_values or {}),
            "ignoreDataGaps": bool(ignore_data_gaps),
        }
    )
    return body


def list_time(value: datetime) -> str:
    """minCreationTime as AMC wants it: UTC, no Z (naive values are taken as UTC)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return format_window_time(value)
