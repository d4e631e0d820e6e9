"""The simulator's answers have the field names and JSON types of the recorded live responses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from amc_pipeline_tests.recordings import COLLECTION, recorded_items

from .api import Api


def recorded() -> dict[str, dict[str, Any]]:
    """Recorded response bodies of the workflow-execution requests, by request name."""
    return {item["name"]: json.loads(item["response"][0]["body"]) for item in recorded_items()
            if "workflowExecutions" in json.dumps(item["request"].get("url"))}


def shape(value: Any) -> Any:
    """Field names and JSON types, recursively (list shapes from their first element)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def same_shape(live: Any, ours: Any) -> None:
    if isinstance(live, dict):
        assert isinstance(ours, dict)
        assert set(live) == set(ours), f"live-only {set(live) - set(ours)}, sim-only {set(ours) - set(live)}"
        for key in live:
            same_shape(live[key], ours[key])
    elif isinstance(live, list):
        assert isinstance(ours, list)
        if live and ours:
            same_shape(live[0], ours[0])
    else:
        assert type(ours) is type(live)


@pytest.fixture(scope="module")
def live() -> dict[str, dict[str, Any]]:
    if not COLLECTION.exists():
        pytest.skip("recorded postman collection not available")
    return recorded()


def test_shapes_match_recorded_live_responses(api: Api, live: dict[str, dict[str, Any]]) -> None:
    body = {
        "workflow": {"workflowId": "my-first-workflow", "sqlQuery": "SELECT campaign FROM dsp_impressions"},
        "timeWindowStart": "2024-01-20T00:00:00",
        "timeWindowEnd": "2024-01-25T00:00:00",
        "timeWindowType": "EXPLICIT",
        "timeWindowTimeZone": "America/New_York",
    }
    created = api.create(body).json()
    same_shape(live["Creates a new workflow execution"], created)
    api.sim.advance_clock(60)
    got = api.get(created["workflowExecutionId"]).json()
    same_shape(live["Gets status information about the requested workflow execution."], got)
    listed = api.list(workflowId="my-first-workflow").json()
    same_shape(live["Returns a list of workflow executions"], listed)
    urls = api.urls(created["workflowExecutionId"]).json()
    same_shape(live["Retrieves pre-signed url for downloading workflow execution results from S3"], urls)
    # Same window conversion as recorded
    recorded_create = live["Creates a new workflow execution"]
    for key in ("timeWindowStart", "timeWindowEnd", "timeWindowStartOriginal", "timeWindowTimeZoneOriginal"):
        assert created[key] == recorded_create[key]
