"""The simulator's ASGI entry point: what happens around every route, including injected faults.

`SimulatorApp` wraps the Starlette app built from `routes`: it adds the request-id headers to
every answer, counts requests, applies `latency_seconds` and injects faults — including the ones a
normal response cannot express (closing the socket with no answer, a truncated body). The routes
themselves (AMC's reporting API, Login with Amazon, pre-signed S3 downloads and the `/_simulator/`
admin API) live in `amc_pipeline.simulator.routes`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

from starlette.applications import Starlette
from starlette.responses import Response

from amc_pipeline.simulator.config import Fault
from amc_pipeline.simulator.routes import all_routes
from amc_pipeline.simulator.routes.responses import EXEC_CT, WORKFLOW_CT, amc_error, expired_response, s3_error
from amc_pipeline.simulator.state import SimulatorState, request_id

logger = logging.getLogger("amc_pipeline.simulator")

_REPORTING = re.compile(r"^/amc/reporting/[^/]+/(workflowExecutions|workflows|schedules)(/[^/]+)?(/downloadUrls)?/?$")


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
    if collection in ("workflows", "schedules"):
        return collection
    if urls:
        return "download_urls"
    if item:
        return "cancel" if method == "PUT" else "get"
    return "create" if method == "POST" else "list"


def build_starlette(state: SimulatorState) -> Starlette:
    """The routes of `amc_pipeline.simulator.routes`, unwrapped (no ids, stats or faults)."""
    return Starlette(routes=all_routes(state))


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
