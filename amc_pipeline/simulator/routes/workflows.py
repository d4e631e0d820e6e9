"""AMC's saved workflows: create, list (paged), get, update and delete under `/workflows`.

`amc-pipeline sync` keeps saved workflows equal to the YAML through these endpoints, and an execution
may name a saved workflow (a create by `workflowId` needs the workflow to exist). Only the create
answers `application/octet-stream`, as recorded live; the others answer the OpenAPI document's type.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from amc_pipeline.simulator.routes.auth import authorize
from amc_pipeline.simulator.routes.responses import WORKFLOW_CT, amc_error, amc_json, json_body
from amc_pipeline.simulator.state import SimulatorState, decode_token, encode_token


class WorkflowRoutes:
    """Handlers under `/amc/reporting/{instanceId}/workflows`."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        base = "/amc/reporting/{instanceId}/workflows"
        return [
            Route(base, self.workflows_create, methods=["POST"]),
            Route(base, self.workflows_list, methods=["GET"]),
            Route(f"{base}/{{workflowId}}", self.workflow_one, methods=["GET", "PUT", "DELETE"]),
        ]

    async def workflows_create(self, request: Request) -> Response:
        instance, denied = authorize(self.state, request, WORKFLOW_CT)
        if denied:
            return denied
        body = await json_body(request, WORKFLOW_CT)
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
        instance, denied = authorize(self.state, request, WORKFLOW_CT)
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
        instance, denied = authorize(self.state, request, WORKFLOW_CT)
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
            return Response(b"{}", media_type=WORKFLOW_CT)  # the document's type (no live recording)
        body = await json_body(request, WORKFLOW_CT)
        if isinstance(body, Response):
            return body
        if body.get("workflowId", workflow_id) != workflow_id:
            return amc_error(400, "workflowId in the body does not match the path", WORKFLOW_CT)
        if "sqlQuery" in body and (not isinstance(body["sqlQuery"], str) or not body["sqlQuery"].strip()):
            return amc_error(400, "sqlQuery must be a non-empty string", WORKFLOW_CT)
        existing.update(body)
        existing["workflowId"] = workflow_id
        self.state.put_workflow(instance, existing)
        return Response(b"{}", media_type=WORKFLOW_CT)  # the document's type (no live recording)
