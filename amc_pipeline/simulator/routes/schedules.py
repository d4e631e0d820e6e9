"""AMC's schedules: create, list (paged), get, update and delete under `/schedules`.

A schedule runs a saved workflow Daily or Weekly at an aggregation hour (UTC); the executions it
starts appear on the simulator clock (`SimulatorState.run_schedules`), listable by workflowId like
any other. Fields are those of the OpenAPI document's `Schedule`; answers are flat, as the live
service's recorded answers are (the document wraps one record as `{"schedule": {...}}`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from amc_pipeline.simulator.routes.auth import authorize
from amc_pipeline.simulator.routes.responses import amc_error, amc_json, json_body
from amc_pipeline.simulator.schedule_book import WEEKDAYS
from amc_pipeline.simulator.state import SimulatorState, decode_token, encode_token

SCHEDULE_CT = "application/vnd.amcschedules.v1+json"
PERIODS = ("Daily", "Weekly")
FLAGS = ("scheduleEnabled", "disableAggregationControls", "requireSyntheticData")


def schedule_fields(body: dict[str, Any], now: float, schedule_id: str | None = None) -> dict[str, Any] | Response:
    """The stored schedule from a create/update body, or AMC's 400 naming the bad field."""
    sid = body.get("scheduleId", schedule_id)
    if not isinstance(sid, str) or not sid:
        return amc_error(400, "scheduleId is required", SCHEDULE_CT)
    if schedule_id is not None and sid != schedule_id:
        return amc_error(400, "scheduleId in the body does not match the path", SCHEDULE_CT)
    if not isinstance(body.get("workflowId"), str) or not body["workflowId"]:
        return amc_error(400, "workflowId is required", SCHEDULE_CT)
    if body.get("aggregationPeriod") not in PERIODS:
        return amc_error(400, f"Invalid aggregationPeriod '{body.get('aggregationPeriod')}'. "
                              f"Allowed: {', '.join(PERIODS)}", SCHEDULE_CT)
    hour = body.get("aggregationHourUtc", 0)
    if isinstance(hour, bool) or not isinstance(hour, int) or not 0 <= hour <= 23:
        return amc_error(400, "aggregationHourUtc must be an integer between 0 and 23", SCHEDULE_CT)
    day = body.get("aggregationStartDay") or WEEKDAYS[datetime.fromtimestamp(now, UTC).weekday()]
    if day not in WEEKDAYS:
        return amc_error(400, f"Invalid aggregationStartDay '{day}'", SCHEDULE_CT)
    for flag in FLAGS:
        if flag in body and not isinstance(body[flag], bool):
            return amc_error(400, f"{flag} must be a boolean", SCHEDULE_CT)
    return {
        "scheduleId": sid,
        "workflowId": body["workflowId"],
        "aggregationPeriod": body["aggregationPeriod"],
        "aggregationHourUtc": hour,
        "aggregationStartDay": day,
        "scheduleEnabled": body.get("scheduleEnabled", True),
        "disableAggregationControls": body.get("disableAggregationControls", False),
        "requireSyntheticData": body.get("requireSyntheticData", False),
    }


def _empty() -> Response:
    return Response(b"{}", media_type=SCHEDULE_CT)


class ScheduleRoutes:
    """Handlers under `/amc/reporting/{instanceId}/schedules`."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        base = "/amc/reporting/{instanceId}/schedules"
        return [
            Route(base, self.create, methods=["POST"]),
            Route(base, self.list, methods=["GET"]),
            Route(f"{base}/{{scheduleId}}", self.one, methods=["GET", "PUT", "DELETE"]),
        ]

    async def create(self, request: Request) -> Response:
        instance, denied = authorize(self.state, request, SCHEDULE_CT)
        if denied:
            return denied
        body = await json_body(request, SCHEDULE_CT)
        if isinstance(body, Response):
            return body
        fields = schedule_fields(body, self.state.now())
        if isinstance(fields, Response):
            return fields
        with self.state.lock:
            if self.state.get_workflow(instance, fields["workflowId"]) is None:
                return amc_error(404, f"Workflow {fields['workflowId']} not found in instance {instance}", SCHEDULE_CT)
            if self.state.get_schedule(instance, fields["scheduleId"]) is not None:
                return amc_error(400, f"Schedule {fields['scheduleId']} already exists", SCHEDULE_CT)
            self.state.put_schedule(instance, fields)
        return _empty()

    async def list(self, request: Request) -> Response:
        instance, denied = authorize(self.state, request, SCHEDULE_CT)
        if denied:
            return denied
        try:
            limit = int(request.query_params.get("limit") or "100")
        except ValueError:
            return amc_error(400, "limit must be an integer", SCHEDULE_CT)
        if not 1 <= limit <= 100:
            return amc_error(400, "limit must be between 1 and 100", SCHEDULE_CT)
        offset = 0
        if request.query_params.get("nextToken"):
            try:
                offset = int(decode_token(request.query_params["nextToken"])["offset"])
            except (ValueError, KeyError, TypeError):
                return amc_error(400, "Invalid nextToken", SCHEDULE_CT)
        items = self.state.list_schedules(instance)
        answer: dict[str, Any] = {"schedules": items[offset: offset + limit]}
        if offset + limit < len(items):
            answer["nextToken"] = encode_token({"offset": offset + limit})
        return amc_json(answer, SCHEDULE_CT)

    async def one(self, request: Request) -> Response:
        instance, denied = authorize(self.state, request, SCHEDULE_CT)
        if denied:
            return denied
        schedule_id = request.path_params["scheduleId"]
        existing = self.state.get_schedule(instance, schedule_id)
        if existing is None:
            return amc_error(404, f"Schedule {schedule_id} not found", SCHEDULE_CT)
        if request.method == "GET":
            return amc_json(existing, SCHEDULE_CT)
        if request.method == "DELETE":
            self.state.delete_schedule(instance, schedule_id)
            return _empty()
        body = await json_body(request, SCHEDULE_CT)
        if isinstance(body, Response):
            return body
        fields = schedule_fields(body, self.state.now(), schedule_id)
        if isinstance(fields, Response):
            return fields
        if self.state.get_workflow(instance, fields["workflowId"]) is None:
            return amc_error(404, f"Workflow {fields['workflowId']} not found in instance {instance}", SCHEDULE_CT)
        self.state.put_schedule(instance, fields)
        return _empty()
