"""Saved workflows and schedules (`/workflows`, `/schedules`): the ops and typed views of their records.

Why apart from `ops`: executions are the hot path (polled in bulk, async); these are the few calls
`amc-pipeline sync` makes to keep AMC's own objects equal to the YAML. They are ops over the same
`_Core` (one request builder, one error classification, one retry policy), driven by `AmcClient`.

Shapes: Amazon's OpenAPI document wraps one record (`{"workflow": {…}}`, `{"schedule": {…}}`);
the responses recorded from the live service are flat. Both are read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from amc_pipeline.amc.core import InstanceLike, _Core, _Op
from amc_pipeline.amc.models import unwrap

#: Page size for listing schedules (AMC's maximum).
SCHEDULE_PAGE_SIZE = 100


@dataclass(frozen=True)
class SavedWorkflow:
    """A saved AMC workflow: its id, SQL and declared input parameters."""

    workflow_id: str
    sql: str
    input_parameters: tuple[dict[str, Any], ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> SavedWorkflow:
        record = unwrap(data, "workflow", "workflow")
        workflow_id, sql = record.get("workflowId"), record.get("sqlQuery")
        if not isinstance(workflow_id, str) or not workflow_id:
            raise ValueError("saved workflow without a workflowId")
        params = record.get("inputParameters") or []
        if not isinstance(params, list):
            raise ValueError(f"workflow {workflow_id}: inputParameters is not a list")
        return cls(workflow_id, sql if isinstance(sql, str) else "", tuple(p for p in params if isinstance(p, dict)),
                   record)

    def body(self) -> dict[str, Any]:
        """The create/update body (the document's `Workflow`)."""
        body: dict[str, Any] = {"workflowId": self.workflow_id, "sqlQuery": self.sql}
        if self.input_parameters:
            body["inputParameters"] = [dict(p) for p in self.input_parameters]
        return body


@dataclass(frozen=True)
class AmcScheduleRecord:
    """An AMC schedule: which saved workflow runs, how often, at which UTC hour."""

    schedule_id: str
    workflow_id: str
    period: str  # AMC's aggregationPeriod: Daily | Weekly
    hour_utc: int | None = None
    start_day: str | None = None
    enabled: bool = True
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> AmcScheduleRecord:
        record = unwrap(data, "schedule", "schedule")
        schedule_id, workflow_id = record.get("scheduleId"), record.get("workflowId")
        if not isinstance(schedule_id, str) or not schedule_id or not isinstance(workflow_id, str):
            raise ValueError("schedule without a scheduleId or workflowId")
        hour = record.get("aggregationHourUtc")
        return cls(
            schedule_id=schedule_id,
            workflow_id=workflow_id,
            period=str(record.get("aggregationPeriod") or ""),
            hour_utc=hour if isinstance(hour, int) and not isinstance(hour, bool) else None,
            start_day=record.get("aggregationStartDay") if isinstance(record.get("aggregationStartDay"), str) else None,
            enabled=record.get("scheduleEnabled") is not False,
            raw=record,
        )

    def body(self) -> dict[str, Any]:
        """The create/update body (the document's `CreateScheduleRequest`)."""
        body: dict[str, Any] = {
            "scheduleId": self.schedule_id,
            "workflowId": self.workflow_id,
            "aggregationPeriod": self.period,
            "scheduleEnabled": self.enabled,
        }
        if self.hour_utc is not None:
            body["aggregationHourUtc"] = self.hour_utc
        if self.start_day is not None:
            body["aggregationStartDay"] = self.start_day
        return body

    def settings(self) -> dict[str, Any]:
        """What the YAML controls: the body without a daily schedule's start day (AMC fills one in)."""
        body = self.body()
        if self.period == "Daily":
            body.pop("aggregationStartDay", None)
        return body

    def same_settings(self, other: AmcScheduleRecord) -> bool:
        """Equal in what the YAML controls (AMC may add fields of its own)."""
        return self.settings() == other.settings()


def _record(core: _Core, call: Any, reply: Any, reader: Any) -> Any:
    try:
        return reader(reply.data)
    except (ValueError, TypeError, AttributeError) as exc:
        raise core.shape_error(call, reply.status_code, reply.request_id, str(exc)) from None


def get_workflow(core: _Core, instance: InstanceLike, workflow_id: str) -> _Op[SavedWorkflow]:
    call = core.call("GET", instance, "workflows", workflow_id, endpoint="workflows")
    reply = yield call
    return _record(core, call, reply, SavedWorkflow.from_json)


def _put(core: _Core, instance: InstanceLike, collection: str, object_id: str, body: dict[str, Any], *,
         create: bool) -> _Op[None]:
    """POST to the collection (create) or PUT to the object (update); AMC answers with an empty object."""
    path = (collection,) if create else (collection, object_id)
    yield core.call("POST" if create else "PUT", instance, *path, endpoint=collection, json_body=body)
    return None


def put_workflow(core: _Core, instance: InstanceLike, workflow: SavedWorkflow, *, create: bool) -> _Op[None]:
    """Create or update a saved workflow."""
    return (yield from _put(core, instance, "workflows", workflow.workflow_id, workflow.body(), create=create))


def list_schedules_page(
    core: _Core, instance: InstanceLike, next_token: str | None = None
) -> _Op[tuple[list[AmcScheduleRecord], str | None]]:
    params = {"limit": str(SCHEDULE_PAGE_SIZE)}
    if next_token:
        params["nextToken"] = next_token
    call = core.call("GET", instance, "schedules", endpoint="schedules", params=params)
    reply = yield call
    records, token = core.items(call, reply, "schedules")
    schedules = []
    for record in records:
        try:
            schedules.append(AmcScheduleRecord.from_json(record))
        except (ValueError, TypeError) as exc:
            raise core.shape_error(call, reply.status_code, reply.request_id, str(exc)) from None
    return schedules, token


def put_schedule(core: _Core, instance: InstanceLike, schedule: AmcScheduleRecord, *, create: bool) -> _Op[None]:
    """Create or update a schedule."""
    return (yield from _put(core, instance, "schedules", schedule.schedule_id, schedule.body(), create=create))
