"""The simulator's HTTP app: AMC reporting API, Login with Amazon token endpoint, pre-signed S3
downloads and the `/_simulator/` admin API.

`SimulatorApp` is a thin ASGI wrapper around a Starlette app: it adds the request-id headers to
every answer, counts requests, applies `latency_seconds` and injects faults — including the ones a
normal response cannot express (closing the socket with no answer, a truncated body).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from amc_pipeline.simulator.config import Fault, Scenario
from amc_pipeline.simulator.results import metadata_document
from amc_pipeline.simulator.state import (
    ACTIVE,
    SimulatorState,
    decode_token,
    encode_token,
    iso_z,
    request_id,
    utc_day_end,
)

EXEC_CT = "application/vnd.amcworkflowexecutions.v1+json"
WORKFLOW_CT = "application/vnd.amcworkflows.v1+json"
WINDOW_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")
WINDOW_TYPES = ("EXPLICIT", "MOST_RECENT_DAY", "MOST_RECENT_WEEK", "CURRENT_MONTH", "PREVIOUS_MONTH", "ALL")
S3_BUCKET = "amc-sim-results"

logger = logging.getLogger("amc_pipeline.simulator")


class _ResultFileResponse(FileResponse):
    """Result files in 1 MiB chunks: Starlette's 64 KiB default costs a thread hop per chunk, which made
    the simulator, not the client, the bottleneck of a 1 GB download."""

    chunk_size = 1024 * 1024

_REPORTING = re.compile(r"^/amc/reporting/[^/]+/(workflowExecutions|workflows)(/[^/]+)?(/downloadUrls)?/?$")


def classify(method: str, path: str) -> str | None:
    """Endpoint name (for faults and stats) of an API request; None for admin/unknown paths."""
    if path.rstrip("/") == "/auth/o2/token":
        return "token"
    if path.startswith("/_s3/"):
        return "download"
    match = _REPORTING.match(path)
    if not match:
        return None
    collection, item, urls = match.groups()
    if collection == "workflows":
        return "workflows"
    if urls:
        return "download_urls"
    if item:
        return "cancel" if method == "PUT" else "get"
    return "create" if method == "POST" else "list"


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


def _bool(value: Any, default: bool = False) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() == "true"


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


class Api:
    """Route handlers; all state lives in `SimulatorState`."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    # ------------------------------------------------------------ auth
    async def token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        cfg = self.state.config
        if form.get("grant_type") != "refresh_token":
            return JSONResponse(
                {"error": "unsupported_grant_type", "error_description": "grant_type must be refresh_token"},
                400,
            )
        if form.get("client_id") != cfg.client_id or form.get("client_secret") != cfg.client_secret:
            return JSONResponse(
                {
                    "error": "invalid_grant",
                    "error_description": "The request has an invalid grant parameter : client",
                },
                400,
            )
        if form.get("refresh_token") != cfg.refresh_token:
            return JSONResponse(
                {
                    "error": "invalid_grant",
                    "error_description": "The request has an invalid grant parameter : refresh_token",
                },
                400,
            )
        token = self.state.issue_token(form["client_id"])
        return JSONResponse(
            {
                "access_token": token,
                "refresh_token": cfg.refresh_token,
                "token_type": "bearer",
                "expires_in": int(cfg.token_ttl_seconds),
            }
        )

    def authorize(self, request: Request, content_type: str = EXEC_CT) -> tuple[str, Response | None]:
        """Check the four headers like AMC: 401, then 403 (client), 400 (missing), 404, 403 (advertiser)."""
        instance = request.path_params["instanceId"]
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            return instance, amc_error(401, "Unauthorized: missing bearer token", content_type)
        client_id, why = self.state.check_token(auth[7:].strip())
        if client_id is None:
            text = "The access token has expired" if why == "expired" else "Invalid access token"
            return instance, amc_error(401, f"Unauthorized: {text}", content_type)
        header_client = request.headers.get("amazon-advertising-api-clientid")
        if header_client != client_id or header_client != self.state.config.client_id:
            return instance, amc_error(403, "Forbidden: the client id does not match the access token", content_type)
        advertiser = request.headers.get("amazon-advertising-api-advertiserid")
        marketplace = request.headers.get("amazon-advertising-api-marketplaceid")
        if not advertiser:
            return instance, amc_error(400, "Missing required header Amazon-Advertising-API-AdvertiserId", content_type)
        if not marketplace:
            return instance, amc_error(
                400, "Missing required header Amazon-Advertising-API-MarketplaceId", content_type
            )
        with self.state.lock:
            known = self.state.instances.get(instance)
        if known is None:
            return instance, amc_error(404, f"Instance {instance} not found", content_type)
        if advertiser != known[0]:
            return instance, amc_error(
                403, f"Advertiser {advertiser} has no access to instance {instance}", content_type
            )
        if marketplace != known[1]:
            return instance, amc_error(
                403, f"Marketplace {marketplace} does not match instance {instance}", content_type
            )
        return instance, None

    async def _json_body(self, request: Request, content_type: str = EXEC_CT) -> dict[str, Any] | Response:
        raw = await request.body()
        try:
            body = json.loads(raw or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return amc_error(400, "Malformed JSON request body", content_type)
        if not isinstance(body, dict):
            return amc_error(400, "Request body must be a JSON object", content_type)
        return body

    # ------------------------------------------------------------ executions
    async def create(self, request: Request) -> Response:
        instance, denied = self.authorize(request)
        if denied:
            return denied
        body = await self._json_body(request)
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

    def _record(self, instance: str, execution_id: str) -> dict[str, Any] | Response:
        record = self.state.get_record(execution_id)
        if record is None or record["instance"] != instance:
            return amc_error(404, f"Workflow execution {execution_id} not found")
        return record

    async def get(self, request: Request) -> Response:
        instance, denied = self.authorize(request)
        if denied:
            return denied
        record = self._record(instance, request.path_params["executionId"])
        if isinstance(record, Response):
            return record
        return amc_json(self.state.view(record, include_workflow=_bool(request.query_params.get("includeWorkflow"))))

    async def update(self, request: Request) -> Response:
        instance, denied = self.authorize(request)
        if denied:
            return denied
        record = self._record(instance, request.path_params["executionId"])
        if isinstance(record, Response):
            return record
        body = await self._json_body(request)
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
        instance, denied = self.authorize(request)
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
        ascending = _bool(q.get("sortAscending"))
        include_cancelled = _bool(q.get("includeCancelled"))
        after = None
        if q.get("nextToken"):
            try:
                after = int(decode_token(q["nextToken"])["after"])
            except (ValueError, KeyError, TypeError):
                return amc_error(400, "Invalid nextToken")
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

    async def download_urls(self, request: Request) -> Response:
        instance, denied = self.authorize(request)
        if denied:
            return denied
        record = self._record(instance, request.path_params["executionId"])
        if isinstance(record, Response):
            return record
        status, _ = self.state.status_of(record, self.state.now())
        if status != "SUCCEEDED":
            return amc_error(400, f"Workflow execution {record['id']} is in status {status}, not SUCCEEDED")
        paths = await anyio.to_thread.run_sync(self.state.result_files, record["id"])
        base = str(request.base_url).rstrip("/")
        urls = [self.presign(base, instance, record["id"], p.name) for p in paths]
        meta = [self.presign(base, instance, record["id"], p.stem + ".metadata.json") for p in paths]
        return amc_json({"downloadUrls": urls, "metadataDownloadUrls": meta})

    def presign(self, base: str, instance: str, execution_id: str, name: str) -> str:
        path = f"/_s3/{S3_BUCKET}/{instance}/{execution_id}/{name}"
        now = self.state.now()
        amz_date = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
        expires = str(int(self.state.config.url_ttl_seconds))
        query = {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": f"ASIASIMULATOR/{amz_date[:8]}/us-east-1/s3/aws4_request",
            "X-Amz-Date": amz_date,
            "X-Amz-Expires": expires,
            "X-Amz-SignedHeaders": "host",
            "X-Amz-Signature": self.state.sign(path, amz_date, expires),
        }
        with self.state.lock:
            self.state.issued_signatures.append(query["X-Amz-Signature"])
        return base + quote(path) + "?" + urlencode(query)

    # ------------------------------------------------------------ S3
    async def s3_object(self, request: Request) -> Response:
        path = request.url.path
        q = request.query_params
        amz_date, expires, signature = q.get("X-Amz-Date"), q.get("X-Amz-Expires"), q.get("X-Amz-Signature")
        if not amz_date or not expires or not signature:
            return s3_error("AccessDenied", "Query-string authentication requires the Signature, Expires and Date")
        expected = self.state.sign(path, amz_date, expires)
        if not hmac.compare_digest(expected, signature):
            return s3_error(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        try:
            signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
            ttl = int(expires)
        except ValueError:
            return s3_error("AccessDenied", "Invalid date")
        now = self.state.now()
        if now > signed_at + ttl:
            return expired_response(signed_at, ttl, now)
        parts = path.split("/")
        if len(parts) != 6:
            return s3_error("NoSuchKey", "The specified key does not exist.", 404)
        _, _, _bucket, _instance, execution_id, name = parts
        try:
            files = await anyio.to_thread.run_sync(self.state.result_files, execution_id)
        except KeyError:
            return s3_error("NoSuchKey", "The specified key does not exist.", 404)
        for file_path in files:
            if name == file_path.name:
                return _ResultFileResponse(file_path, media_type="text/csv", content_disposition_type="attachment")
            if name == file_path.stem + ".metadata.json":
                record = self.state.get_record(execution_id)
                return Response(
                    metadata_document(execution_id, record["columns"] if record else [], file_path),
                    media_type="application/json",
                )
        return s3_error("NoSuchKey", "The specified key does not exist.", 404)

    # ------------------------------------------------------------ saved workflows
    async def workflows_create(self, request: Request) -> Response:
        instance, denied = self.authorize(request, WORKFLOW_CT)
        if denied:
            return denied
        body = await self._json_body(request, WORKFLOW_CT)
        if isinstance(body, Response):
            return body
        if not isinstance(body.get("workflowId"), str) or not body["workflowId"]:
            return amc_error(400, "workflowId is required", WORKFLOW_CT)
        if not isinstance(body.get("sqlQuery"), str) or not body["sqlQuery"].strip():
            return amc_error(400, "sqlQuery is required", WORKFLOW_CT)
        with self.state.lock:
            if self.state.get_workflow(instance, body["workflowId"]) is not None:
                return amc_error(400, f"Workflow {body['workflowId']} already exists", WORKFLOW_CT)
            self.state.put_workflow(instance, body)
        return Response(b"{}", media_type="application/octet-stream")  # as recorded live

    async def workflows_list(self, request: Request) -> Response:
        instance, denied = self.authorize(request, WORKFLOW_CT)
        if denied:
            return denied
        try:
            limit = int(request.query_params.get("limit") or "100")
        except ValueError:
            return amc_error(400, "limit must be an integer", WORKFLOW_CT)
        offset = 0
        if request.query_params.get("nextToken"):
            try:
                offset = int(decode_token(request.query_params["nextToken"])["offset"])
            except (ValueError, KeyError, TypeError):
                return amc_error(400, "Invalid nextToken", WORKFLOW_CT)
        items = self.state.list_workflows(instance)
        answer: dict[str, Any] = {"workflows": items[offset : offset + limit]}
        if offset + limit < len(items):
            answer["nextToken"] = encode_token({"offset": offset + limit})
        return amc_json(answer, WORKFLOW_CT)

    async def workflow_one(self, request: Request) -> Response:
        instance, denied = self.authorize(request, WORKFLOW_CT)
        if denied:
            return denied
        workflow_id = request.path_params["workflowId"]
        existing = self.state.get_workflow(instance, workflow_id)
        if existing is None:
            return amc_error(404, f"Workflow {workflow_id} not found", WORKFLOW_CT)
        if request.method == "GET":
            return amc_json(existing, WORKFLOW_CT)
        if request.method == "DELETE":
            self.state.delete_workflow(instance, workflow_id)
            return Response(b"{}", media_type="application/octet-stream")
        body = await self._json_body(request, WORKFLOW_CT)
        if isinstance(body, Response):
            return body
        if body.get("workflowId", workflow_id) != workflow_id:
            return amc_error(400, "workflowId in the body does not match the path", WORKFLOW_CT)
        if "sqlQuery" in body and (not isinstance(body["sqlQuery"], str) or not body["sqlQuery"].strip()):
            return amc_error(400, "sqlQuery must be a non-empty string", WORKFLOW_CT)
        existing.update(body)
        existing["workflowId"] = workflow_id
        self.state.put_workflow(instance, existing)
        return Response(b"{}", media_type="application/octet-stream")

    # ------------------------------------------------------------ admin
    async def admin(self, request: Request) -> Response:
        state = self.state
        action = request.path_params["action"].rstrip("/")
        method = request.method
        body: dict[str, Any] = {}
        if method in ("POST", "PUT"):
            raw = await request.body()
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                return JSONResponse({"error": "malformed JSON"}, 400)
        try:
            if action == "health":
                return JSONResponse({"ok": True, "now": iso_z(state.now(), True)})
            if action == "scenarios":
                if method == "POST":
                    state.set_scenario(body["workflow_key"], Scenario.from_dict(body.get("scenario") or {}))
                elif method == "DELETE":
                    state.clear_scenarios()
                with state.lock:
                    return JSONResponse({k: v.to_dict() for k, v in state.scenarios.items()})
            if action == "faults":
                if method == "POST":
                    state.add_fault(Fault.from_dict(body))
                elif method == "DELETE":
                    state.clear_faults()
                return JSONResponse(state.list_faults())
            if action == "executions":
                instance = request.query_params.get("instance_id")
                now = state.now()
                return JSONResponse([state.view(r, now) for r in state.list_records(instance)])
            if action == "tokens" and method == "GET":
                with state.lock:
                    return JSONResponse({"access_tokens": list(state.issued_tokens),
                                         "url_signatures": list(state.issued_signatures)})
            if action == "stats":
                return JSONResponse(state.stats())
            if action == "revoke-tokens" and method == "POST":
                state.revoke_tokens()
                return JSONResponse({"revoked": True})
            if action == "advance-clock" and method == "POST":
                state.advance_clock(float(body.get("seconds", 0)))
                return JSONResponse({"now": iso_z(state.now(), True), "offset_seconds": state.clock_offset})
            if action == "reset" and method == "POST":
                state.reset()
                return JSONResponse({"reset": True})
            if action == "instances":
                if method == "POST":
                    state.register_instance(body["instance_id"], body["advertiser_id"], body["marketplace_id"])
                with state.lock:
                    return JSONResponse(
                        {k: {"advertiser_id": a, "marketplace_id": m} for k, (a, m) in state.instances.items()}
                    )
        except (KeyError, TypeError, ValueError) as exc:
            return JSONResponse({"error": f"bad admin request: {exc}"}, 400)
        return JSONResponse({"error": f"unknown admin action {method} {action}"}, 404)


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


def build_starlette(state: SimulatorState) -> Starlette:
    api = Api(state)
    base = "/amc/reporting/{instanceId}"
    routes = [
        Route("/auth/o2/token", api.token, methods=["POST"]),
        Route(f"{base}/workflowExecutions", api.create, methods=["POST"]),
        Route(f"{base}/workflowExecutions", api.list, methods=["GET"]),
        Route(f"{base}/workflowExecutions/{{executionId}}", api.get, methods=["GET"]),
        Route(f"{base}/workflowExecutions/{{executionId}}", api.update, methods=["PUT"]),
        Route(f"{base}/workflowExecutions/{{executionId}}/downloadUrls", api.download_urls, methods=["GET"]),
        Route(f"{base}/workflows", api.workflows_create, methods=["POST"]),
        Route(f"{base}/workflows", api.workflows_list, methods=["GET"]),
        Route(f"{base}/workflows/{{workflowId}}", api.workflow_one, methods=["GET", "PUT", "DELETE"]),
        Route("/_s3/{rest:path}", api.s3_object, methods=["GET"]),
        Route("/_simulator/{action:path}", api.admin, methods=["GET", "POST", "PUT", "DELETE"]),
    ]
    return Starlette(routes=routes)


class SimulatorApp:
    """ASGI entry point: headers, stats, latency and fault injection around the Starlette app."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state
        self.inner = build_starlette(state)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        rid = request_id()
        raw_send = send

        async def send_with_ids(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                headers.append((b"x-amz-request-id", rid.encode()))
                headers.append((b"x-amz-rid", rid.encode()))
                message = dict(message, headers=headers)
            await raw_send(message)

        endpoint = classify(scope["method"], scope["path"])
        logger.debug("%s %s (%s)", scope["method"], scope["path"], endpoint or "other")  # never the query
        if endpoint is None:
            await self.inner(scope, receive, send_with_ids)
            return
        self.state.count(endpoint)
        self.state.enter()
        try:
            latency = float(self.state.config.latency_seconds)
            if latency > 0 and endpoint != "download":
                await asyncio.sleep(latency)
            fault = self.state.take_fault(endpoint)
            if fault is None:
                await self.inner(scope, receive, send_with_ids)
                return
            await self.apply_fault(fault, endpoint, scope, receive, raw_send, send_with_ids)
        finally:
            self.state.leave()

    async def apply_fault(
        self, fault: Fault, endpoint: str, scope: dict[str, Any], receive: Any, raw_send: Any, send: Any
    ) -> None:
        content_type = {"workflows": WORKFLOW_CT, "token": "application/json"}.get(endpoint, EXEC_CT)
        if fault.delay_seconds > 0:
            await asyncio.sleep(fault.delay_seconds)
        kind = fault.kind
        response: Response | None = None
        if kind == "slow":
            await self.inner(scope, receive, send)
            return
        if kind == "revoke_token":
            self.state.revoke_tokens()
            await self.inner(scope, receive, send)
            return
        if endpoint == "download" and kind in ("throttle", "error500"):
            # S3 answers in XML: 503 SlowDown when throttling, 500 InternalError otherwise
            if kind == "throttle":
                response = s3_error("SlowDown", "Please reduce your request rate.", 503)
                response.headers["Retry-After"] = str(fault.retry_after)
            else:
                response = s3_error("InternalError", "We encountered an internal error. Please try again.", 500)
        elif kind == "throttle":
            response = amc_error(429, "Too Many Requests", content_type, {"Retry-After": str(fault.retry_after)})
        elif kind == "error500":
            response = amc_error(500, "Internal Server Error. Please retry later.", content_type)
        elif kind == "timeout504":
            response = Response(
                json.dumps({"message": "Endpoint request timed out"}),
                status_code=504,
                media_type="application/json",
            )
        elif kind == "expire_url":
            now = self.state.now()
            ttl = int(self.state.config.url_ttl_seconds)
            response = expired_response(now - ttl - 1, ttl, now)
        elif kind == "drop":
            await drop_connection(raw_send)
            return
        elif kind == "lost_create_response":

            async def discard(message: dict[str, Any]) -> None:
                return None

            await self.inner(scope, receive, discard)
            await drop_connection(raw_send)
            return
        elif kind == "truncate_download":
            await self.truncated(scope, receive, raw_send, send)
            return
        assert response is not None
        await response(scope, receive, send)

    async def truncated(self, scope: dict[str, Any], receive: Any, raw_send: Any, send: Any) -> None:
        """Send the real headers (full Content-Length) and about half the body, then close the socket."""
        state: dict[str, Any] = {"budget": None, "done": False}

        async def cut(message: dict[str, Any]) -> None:
            if state["done"]:
                return
            if message["type"] == "http.response.start":
                length = next((int(v) for k, v in message.get("headers", []) if k.lower() == b"content-length"), 0)
                state["budget"] = length // 2
                await send(message)
                return
            if message["type"] == "http.response.body":
                body = message.get("body", b"")
                budget = state["budget"] or 0
                chunk = body[:budget]
                state["budget"] = budget - len(chunk)
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if state["budget"] <= 0 or not message.get("more_body", False):
                    state["done"] = True
                    await drop_connection(raw_send)

        await self.inner(scope, receive, cut)
        if not state["done"]:
            await drop_connection(raw_send)


async def drop_connection(raw_send: Any) -> None:
    """Close the client's socket without (the rest of) an answer.

    uvicorn's `send` is a bound method of its per-request cycle, which holds the transport: closing
    it and marking the cycle disconnected makes uvicorn skip its own 500 answer.
    """
    cycle = getattr(raw_send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("simulated connection drop needs uvicorn's transport")
    transport.close()
    cycle.disconnected = True
    await asyncio.sleep(0)


__all__ = ["SimulatorApp", "build_starlette", "classify"]
