"""The AMC endpoints the pipeline uses, as ops: generators over `_Core` that yield calls and
return typed results (see `core` for the protocol).

Written once for both clients: `AmcClient` and `AsyncAmcClient` drive the same generators, so an
endpoint's request, validation and reading of the answer cannot differ between sync and async.
`Pages` holds the page-walking of a list (tokens, the repeated-token guard, when to stop) so the
shells only loop over it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from amc_pipeline.amc.bodies import MAX_PAGE_SIZE, list_time
from amc_pipeline.amc.core import InstanceLike, ListFilters, _Core, _Op, _Reply
from amc_pipeline.amc.models import AmcExecution

logger = logging.getLogger("amc_pipeline.amc.client")

#: Label for the multi-page guard of list_executions (no request of its own).
LIST_PAGES_LABEL = "GET workflowExecutions (pages)"


def create_execution(core: _Core, instance: InstanceLike, body: dict[str, Any]) -> _Op[AmcExecution]:
    if not isinstance(body, dict) or ("workflowId" in body) == ("workflow" in body):
        raise ValueError("execution body needs exactly one of 'workflowId' or 'workflow'")
    call = core.call("POST", instance, "workflowExecutions", endpoint="create", json_body=body)
    reply = yield call
    execution = core.execution(call, reply)
    logger.info(
        "created AMC execution %s on %s (request_id=%s)",
        execution.execution_id,
        instance.instance_id,
        execution.request_id,
    )
    return execution


def get_execution(core: _Core, instance: InstanceLike, execution_id: str) -> _Op[AmcExecution]:
    call = core.call("GET", instance, "workflowExecutions", execution_id, endpoint="get")
    reply = yield call
    return core.execution(call, reply)


def list_executions_page(
    core: _Core,
    instance: InstanceLike,
    *,
    min_creation_time: datetime | None = None,
    max_creation_time: datetime | None = None,
    workflow_id: str | None = None,
    include_cancelled: bool = True,
    sort_ascending: bool = False,
    limit: int = MAX_PAGE_SIZE,
    next_token: str | None = None,
) -> _Op[tuple[list[AmcExecution], str | None]]:
    if min_creation_time is None and not workflow_id:
        raise ValueError("listing executions needs min_creation_time or workflow_id (AMC requires one)")
    params: dict[str, str] = {
        "limit": str(max(1, min(MAX_PAGE_SIZE, int(limit)))),
        "includeCancelled": "true" if include_cancelled else "false",
        "sortAscending": "true" if sort_ascending else "false",
    }
    if min_creation_time is not None:
        params["minCreationTime"] = list_time(min_creation_time)
    if max_creation_time is not None:
        # Not in the OpenAPI text, but in Amazon's recorded collection: bounds a creation-time slice,
        # so the poller can page several slices in parallel.
        params["maxCreationTime"] = list_time(max_creation_time)
    if workflow_id:
        params["workflowId"] = workflow_id
    if next_token:
        params["nextToken"] = next_token
    call = core.call("GET", instance, "workflowExecutions", endpoint="list", params=params)
    reply = yield call
    records, token = core.items(call, reply, "executions")
    executions = [core.execution(call, _Reply(reply.status_code, r, reply.request_id)) for r in records]
    return executions, token


class Pages:
    """Every page of a list of executions, one op per page, fetched only when asked for.

    `next_op()` gives the op for the next page, or None after the last one. A next-page token
    AMC already gave is an error (raised when the page after it is asked for, so the items of
    the page that carried it are still delivered first).
    """

    def __init__(
        self, core: _Core, instance: InstanceLike, next_token: str | None, filters: ListFilters
    ) -> None:
        self._core = core
        self._instance = instance
        self._filters = filters
        self._token = next_token
        self._seen: set[str] = set()
        self._started = False

    def next_op(self) -> _Op[list[AmcExecution]] | None:
        if self._started:
            self._token = self._core.next_token(LIST_PAGES_LABEL, self._seen, self._token)
            if self._token is None:
                return None
        self._started = True
        return self._page()

    def _page(self) -> _Op[list[AmcExecution]]:
        page, self._token = yield from list_executions_page(
            self._core, self._instance, next_token=self._token, **self._filters
        )
        return page


def cancel_execution(core: _Core, instance: InstanceLike, execution_id: str) -> _Op[AmcExecution | None]:
    call = core.call(
        "PUT",
        instance,
        "workflowExecutions",
        execution_id,
        endpoint="cancel",
        json_body={"status": "CANCELLED"},
    )
    reply = yield call
    if reply.data in (None, {}, ""):
        return None
    return core.execution(call, reply)


def get_download_urls(core: _Core, instance: InstanceLike, execution_id: str) -> _Op[list[str]]:
    urls: list[str] = []
    seen: set[str] = set()
    token: str | None = None
    while True:
        call = core.call(
            "GET",
            instance,
            "workflowExecutions",
            execution_id,
            "downloadUrls",
            endpoint="download_urls",
            params={"nextToken": token} if token else None,
        )
        reply = yield call
        page, token = core.items(call, reply, "downloadUrls")
        if not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in page):
            raise core.shape_error(
                call,
                reply.status_code,
                reply.request_id,
                "'downloadUrls' holds something other than URLs",
            )
        urls.extend(page)
        token = core.next_token(call.label, seen, token)
        if token is None:
            return urls
