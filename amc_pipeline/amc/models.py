"""Typed views of AMC API records, tolerant of the shapes the live service and the spec disagree on."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: The AMC timestamp format for EXPLICIT windows: no `Z`, no offset.
AMC_WINDOW_FORMAT = "%Y-%m-%dT%H:%M:%S"


def format_window_time(value: datetime) -> str:
    """Format a window bound as AMC wants it (local wall time in the window's time zone, no Z)."""
    return value.replace(tzinfo=None).strftime(AMC_WINDOW_FORMAT)


def parse_amc_time(value: Any) -> datetime | None:
    """Parse AMC's ISO times (`2024-09-25T03:11:52Z`, with or without millis) as aware UTC."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def unwrap(data: Any, key: str, what: str) -> dict[str, Any]:
    """The record of an answer in the flat live shape or in the document's `{key: {...}}` wrapper."""
    if isinstance(data, dict) and isinstance(data.get(key), dict):
        return data[key]
    if isinstance(data, dict):
        return data
    raise ValueError(f"expected a JSON object for a {what}, got {type(data).__name__}")


def unwrap_execution(data: Any) -> dict[str, Any]:
    """Accept both the flat live shape and the spec's `{"workflowExecution": {...}}` wrapper."""
    return unwrap(data, "workflowExecution", "workflow execution")


@dataclass(frozen=True)
class OutputColumn:
    name: str
    data_type: str
    column_type: str | None = None


@dataclass(frozen=True)
class AmcExecution:
    """One workflow execution as AMC reports it."""

    execution_id: str
    status: str
    workflow_id: str | None = None
    create_time: datetime | None = None
    last_updated_time: datetime | None = None
    window_start_original: str | None = None
    window_end_original: str | None = None
    window_time_zone: str | None = None
    execution_time_seconds: float | None = None
    failure_reason: str | None = None
    output_columns: tuple[OutputColumn, ...] = ()
    request_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any, request_id: str | None = None) -> AmcExecution:
        record = unwrap_execution(data)
        execution_id = record.get("workflowExecutionId")
        status = record.get("status")
        if not isinstance(execution_id, str) or not execution_id:
            raise ValueError("workflow execution without a workflowExecutionId")
        if not isinstance(status, str) or not status:
            raise ValueError(f"workflow execution {execution_id} without a status")
        columns = []
        for col in record.get("outputColumns") or []:
            if isinstance(col, dict) and isinstance(col.get("name"), str):
                columns.append(
                    OutputColumn(
                        name=col["name"],
                        data_type=str(col.get("dataType") or "STRING").upper(),
                        column_type=col.get("columnType"),
                    )
                )
        exec_time = record.get("executionTime")
        reason = record.get("failureReason") or record.get("statusReason")
        return cls(
            execution_id=execution_id,
            status=status.upper(),
            workflow_id=record.get("workflowId"),
            create_time=parse_amc_time(record.get("createTime")),
            last_updated_time=parse_amc_time(record.get("lastUpdatedTime")),
            window_start_original=record.get("timeWindowStartOriginal"),
            window_end_original=record.get("timeWindowEndOriginal"),
            window_time_zone=record.get("timeWindowTimeZoneOriginal"),
            execution_time_seconds=float(exec_time) if isinstance(exec_time, int | float) else None,
            failure_reason=reason if isinstance(reason, str) else None,
            output_columns=tuple(columns),
            request_id=request_id,
            raw=record,
        )
