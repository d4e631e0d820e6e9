"""The simulator's own control API under `/_simulator/` (no auth; JSON in and out).

It mirrors `SimulatorServer`'s Python methods so tests and the e2e stack can script scenarios,
faults, the clock and instances of a simulator running in another process.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from amc_pipeline.simulator.config import Fault, Scenario
from amc_pipeline.simulator.state import SimulatorState, iso_z


class AdminRoutes:
    """`/_simulator/{action}`: health, scenarios, faults, executions, tokens, stats, clock, reset, instances."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        return [Route("/_simulator/{action:path}", self.admin, methods=["GET", "POST", "PUT", "DELETE"])]

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
            if action == "accounts" and method == "GET":
                return JSONResponse(state.accounts.summary())
            if action == "revoke-account" and method == "POST":
                state.revoke_account(body["client_id"])
                return JSONResponse({"revoked": body["client_id"]})
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
                    state.register_instance(body["instance_id"], body["advertiser_id"], body["marketplace_id"],
                                            body.get("client_id"))
                with state.lock:
                    return JSONResponse(
                        {k: {"advertiser_id": a, "marketplace_id": m} for k, (a, m) in state.instances.items()}
                    )
        except (KeyError, TypeError, ValueError) as exc:
            return JSONResponse({"error": f"bad admin request: {exc}"}, 400)
        return JSONResponse({"error": f"unknown admin action {method} {action}"}, 404)
