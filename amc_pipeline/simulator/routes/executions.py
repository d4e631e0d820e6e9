"""AMC's workflowExecutions: create (ad hoc or saved workflow), get, cancel/update and list.

Validation follows Amazon's documented API (time windows, timeouts, flags, the daily quota) and
answers with AMC's error texts, because the client's error classification is tested against them.
Statuses are never stored: `SimulatorState.view` computes them on the simulator clock.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from amc_pipeline.simulator.routes.auth import authorize
from amc_pipeline.simulator.routes.responses import amc_error, amc_json, json_body, parse_bool
from amc_pipeline.simulator.state import ACTIVE, SimulatorState, decode_token, encode_token, utc_day_end

WINDOW_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")
WINDOW_TYPES = ("EXPLICIT", "MOST_RECENT_DAY", "MOST_RECENT_WEEK", "CURRENT_MONTH", "PREVIOUS_MONTH", "ALL")


def _window(body: dict[str, Any], now: float) -> dict[str, Any] | Response:
    """Validate the time window and return the AMC window fields (UTC with Z plus originals)."""
    window_type = body.get("timeWindowType", "MOST_RECENT_DAY")
    if window_type not in WINDOW_TYPES:
        return amc_error(400, f"Invalid timeWindowType '{window_type}'. Allowed: {', '.join(WINDOW_TYPES)}")
    tz_name = body.get("timeWindowTimeZone") or "UTC"
    try:
        tz = ZoneInfo(str(tz_name))
    except (ZoneInfoNotFoundError, ValueError):
        return amc_error(400, f"Invalid timeWindowTimeZone '{tz_name}'")
    if window_type == "EXPLICIT":
        start_text, end_text = body.get("timeWindowStart"), body.get("timeWindowEnd")
        if not start_text or not end_text:
            return amc_error(400, "timeWindowStart and timeWindowEnd are required when timeWindowType is EXPLICIT")
        for name, text in (("timeWindowStart", start_text), ("timeWindowEnd", end_text)):
            if not isinstance(text, str) or not WINDOW_RE.match(text):
                return amc_error(
                    400,
                    f"Invalid {name} '{text}': expected format yyyy-MM-ddTHH:mm:ss without time zone offset",
                )
        try:
            start_local = datetime.fromisoformat(start_text)
            end_local = datetime.fromisoformat(end_text)
        except ValueError:
            return amc_error(400, "Invalid timeWindowStart/timeWindowEnd: not a valid date-time")
        if end_local <= start_local:
            return amc_error(400, "timeWindowEnd must be after timeWindowStart")
    else:
        today = datetime.fromtimestamp(now, tz).replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
        if window_type == "MOST_RECENT_DAY":
            start_local, end_local = today - timedelta(days=1), today
        elif window_type == "MOST_RECENT_WEEK":
            start_local, end_local = today - timedelta(days=7), today
        elif window_type == "CURRENT_MONTH":
            start_local, end_local = today.replace(day=1), today + timedelta(days=1)
        elif window_type == "PREVIOUS_MONTH":
            end_local = today.replace(day=1)
            start_local = (end_local - timedelta(days=1)).replace(day=1)
        else:  # ALL
            start_local, end_local = today - timedelta(days=760), today
    start_utc = start_local.replace(tzinfo=tz).astimezone(UTC)
    end_utc = end_local.replace(tzinfo=tz).astimezone(UTC)
    return {
        "timeWindowStart": start_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "timeWindowEnd": end_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "timeWindowStartOriginal": start_local.strftime("%Y-%m-%dT%H:%M:%S"),
        "timeWindowEndOriginal": end_local.strftime("%Y-%m-%dT%H:%M:%S"),
        "timeWindowTimeZoneOriginal": str(tz_name),
    }


def sql_compile_error(sql: str) -> str:
    """AMC's compile error text, pointing at the first table after FROM."""
    match = re.search(r"\bfrom\s+([A-Za-z_][\w.]*)", sql, re.IGNORECASE)
    if match:
        first_line = sql[: match.start(1)].count("\n") + 1
        line_start = sql.rfind("\n", 0, match.start(1)) + 1
        col = match.start(1) - line_start + 1
        name = match.group(1)
        return (
            f"Unable to compile query. From line {first_line}, column {col} to line {first_line}, "
            f"column {col + len(name) - 1}: Object '{name}' not found"
        )
    return "Unable to compile query. From line 1, column 15 to line 1, column 27: Object 'unknown_table' not found"


def record_for(state: SimulatorState, instance: str, execution_id: str) -> dict[str, Any] | Response:
    """The execution's record if it belongs to `instance`, else AMC's 404."""
    record = state.get_record(execution_id)
    if record is None or record["instance"] != instance:
        return amc_error(404, f"Workflow execution {execution_id} not found")
    return record


class ExecutionRoutes:
    """Handlers under `/amc/reporting/{instanceId}/workflowExecutions`; all state lives in `SimulatorState`."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        base = "/amc/reporting/{instanceId}/workflowExecutions"
        return [
            Route(base, self.create, methods=["POST"]),
            Route(base, self.list, methods=["GET"]),
            Route(f"{base}/{{executionId}}", self.get, methods=["GET"]),
            Route(f"{base}/{{executionId}}", self.update, methods=["PUT"]),
        ]

    async def create(self, request: Request) -> Response:
        instance, denied = authorize(self.state, request)
        if denied:
            return denied
        body = await json_body(request)
        if isinstance(body, Response):
            return body
        has_id = body.get("workflowId") is not None
        has_wf = body.get("workflow") is not None
        if has_id == has_wf:
            return amc_error(400, "Exactly one of workflowId or workflow must be specified")
        sql: str | None = None
        if has_wf:
            wf = body["workflow"]
            if not isinstance(wf, dict) or not isinstance(wf.get("workflowId"), str) or not wf["workflowId"]:
                return amc_error(400, "workflow.workflowId is required")
            if not isinstance(wf.get("sqlQuery"), str) or not wf["sqlQuery"].strip():
                return amc_error(400, "workflow.sqlQuery is required")
            workflow_id, sql = wf["workflowId"], wf["sqlQuery"]
        else:
            workflow_id = body["workflowId"]
            if not isinstance(workflow_id, str) or not workflow_id:
                return amc_error(400, "workflowId must be a non-empty string")
            saved = self.state.get_workflow(instance, workflow_id)
            if saved is None:
                return amc_error(404, f"Workflow {workflow_id} not found in instance {instance}")
            sql = saved.get("sqlQuery")
        now = self.state.now()
        window = _window(body, now)
        if isinstance(window, Response):
            return window
        timeout = body.get("workflowExecutionTimeoutSeconds", 21600)
        if isinstance(timeout, bool) or not isinstance(timeout, int) or not 900 <= timeout <= 86400:
            return amc_error(400, "workflowExecutionTimeoutSeconds must be an integer between 900 and 86400")
        params = body.get("parameterValues", {})
        if params is None:
            params = {}
        if not isinstance(params, dict):
            return amc_error(400, "parameterValues must be a map")
        for flag in ("ignoreDataGaps", "disableAggregationControls", "dryRun", "skipPublish"):
            if flag in body and not isinstance(body[flag], bool):
                return amc_error(400, f"{flag} must be a boolean")
        scenario = self.state.scenario_for(workflow_id)
        if scenario.kind == "sql_error":
            return amc_error(400, sql_compile_error(sql or ""))
        with self.state.lock:
            used = self.state.quota_used(instance, now)
            quota = int(self.state.config.daily_quota)
            if used >= quota:
                retry_after = max(1, int(utc_day_end(now) - now))
                return amc_error(
                    429,
                    f"Daily limit of {quota} ad hoc workflow executions reached for instance {instance}",
                    headers={"Retry-After": str(retry_after)},
                )
            active, limit = self.state.active_in_account(instance, now)
            if limit and active >= limit:
                self.state.accounts.account_of(instance).refused_creates += 1
                return amc_error(
                    429,
                    f"Too many concurrent workflow executions for the account: {active} running, limit {limit}",
                    headers={"Retry-After": "60"},
                )
            fields = {
                "workflowId": workflow_id,
                "workflowExecutionTimeoutSeconds": timeout,
                "parameterValues": params,
                "ignoreDataGaps": bool(body.get("ignoreDataGaps", False)),
                "disableAggregationControls": bool(body.get("disableAggregationControls", False)),
                **window,
            }
            view = self.state.create_execution(instance, fields, sql)
        return amc_json(view)

    async def get(self, request: Request) -> Response:
        instance, denied = authorize(self.state, request)
        if denied:
            return denied
        self.state.run_schedules()
        record = record_for(self.state, instance, request.path_params["executionId"])
        if isinstance(record, Response):
            return record
        include_workflow = parse_bool(request.query_params.get("includeWorkflow"))
        return amc_json(self.state.view(record, include_workflow=include_workflow))

    async def update(self, request: Request) -> Response:
        instance, denied = authorize(self.state, request)
        if denied:
            return denied
        record = record_for(self.state, instance, request.path_params["executionId"])
        if isinstance(record, Response):
            return record
        body = await json_body(request)
        if isinstance(body, Response):
            return body
        with self.state.lock:
            status, _ = self.state.status_of(record, self.state.now())
            if "status" in body:
                if body["status"] != "CANCELLED":
                    return amc_error(400, f"Invalid status '{body['status']}': only CANCELLED may be requested")
                if status not in ACTIVE:
                    return amc_error(400, f"Cannot cancel workflow execution {record['id']} in status {status}")
                self.state.cancel(record)
            if "disableAggregationControls" in body:
                if not isinstance(body["disableAggregationControls"], bool):
                    return amc_error(400, "disableAggregationControls must be a boolean")
                self.state.update_public(record, {"disableAggregationControls": body["disableAggregationControls"]})
            return amc_json(self.state.view(record))

    async def list(self, request: Request) -> Response:
        instance, denied = authorize(self.state, request)
        if denied:
            return denied
        q = request.query_params
        min_text, max_text, workflow_id = (
            q.get("minCreationTime"),
            q.get("maxCreationTime"),
            q.get("workflowId"),
        )
        if not min_text and not workflow_id:
            return amc_error(400, "One of minCreationTime or workflowId is required")
        bounds = []
        for name, text in (("minCreationTime", min_text), ("maxCreationTime", max_text)):
            if not text:
                bounds.append(None)
                continue
            try:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return amc_error(400, f"Invalid {name} '{text}': expected yyyy-MM-ddTHH:mm:ss")
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            bounds.append(moment.timestamp())
        try:
            limit = int(q.get("limit", "100"))
        except ValueError:
            return amc_error(400, "limit must be an integer")
        if not 1 <= limit <= 100:
            return amc_error(400, "limit must be between 1 and 100")
        ascending = parse_bool(q.get("sortAscending"))
        include_cancelled = parse_bool(q.get("includeCancelled"))
        after = None
        if q.get("nextToken"):
            try:
                after = int(decode_token(q["nextToken"])["after"])
            except (ValueError, KeyError, TypeError):
                return amc_error(400, "Invalid nextToken")
        self.state.run_schedules()
        now = self.state.now()
        with self.state.lock:
            records = self.state.list_records(instance)
            if not ascending:
                records.reverse()
            page: list[tuple[int, dict[str, Any]]] = []
            more = False
            for record in records:
                if after is not None and (record["seq"] <= after if ascending else record["seq"] >= after):
                    continue
                # creation times are whole seconds in the API; compare at that precision
                created = int(record["created"])
                if bounds[0] is not None and created < bounds[0]:
                    continue
                if bounds[1] is not None and created > bounds[1]:
                    continue
                if workflow_id and record["public"]["workflowId"] != workflow_id:
                    continue
                view = self.state.view(record, now)
                if view["status"] == "CANCELLED" and not include_cancelled:
                    continue
                if len(page) == limit:
                    more = True
                    break
                page.append((record["seq"], view))
        answer: dict[str, Any] = {"executions": [v for _, v in page]}
        if more:
            answer["nextToken"] = encode_token({"after": page[-1][0]})
        return amc_json(answer)
