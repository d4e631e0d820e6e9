"""Create validation, lifecycle, scenarios, quota, list and cancel."""

from __future__ import annotations

import time
import uuid

import pytest

from amc_pipeline.simulator import Scenario, SimulatorConfig, SimulatorServer
from amc_pipeline_tests.constants import ADVERTISER_ID, FAST_LIFECYCLE, MARKETPLACE_ID, OTHER_INSTANCE_ID

from .api import Api, explicit_body, get_token


def test_create_answers_flat_pending_record_with_utc_window(api: Api) -> None:
    response = api.create(
        explicit_body(
            timeWindowStart="2024-01-20T00:00:00",
            timeWindowEnd="2024-01-25T00:00:00",
            timeWindowTimeZone="America/New_York",
            parameterValues={"x": "1"},
            ignoreDataGaps=True,
        )
    )
    assert response.status_code == 200, response.text
    body = response.json()
    uuid.UUID(body["workflowExecutionId"])
    assert body["status"] == "PENDING"
    assert body["executionCategory"] == "AD_HOC"
    assert body["timeWindowStart"] == "2024-01-20T05:00:00Z"
    assert body["timeWindowEnd"] == "2024-01-25T05:00:00Z"
    assert body["timeWindowStartOriginal"] == "2024-01-20T00:00:00"
    assert body["timeWindowEndOriginal"] == "2024-01-25T00:00:00"
    assert body["timeWindowTimeZoneOriginal"] == "America/New_York"
    assert body["workflowExecutionTimeoutSeconds"] == 21600
    assert body["parameterValues"] == {"x": "1"}
    assert body["ignoreDataGaps"] is True
    assert body["workflowId"] == "daily-t1"
    assert "workflowExecution" not in body


@pytest.mark.parametrize(
    "changes",
    [
        {"timeWindowStart": "2024-01-20T00:00:00Z"},
        {"timeWindowEnd": "2024-01-21T00:00:00+01:00"},
        {"timeWindowEnd": None},
        {"timeWindowStart": "2024-01-22T00:00:00"},
        {"workflowExecutionTimeoutSeconds": 899},
        {"workflowExecutionTimeoutSeconds": 86401},
        {"timeWindowTimeZone": "Mars/Olympus"},
        {"timeWindowType": "SOMETIMES"},
        {"workflowId": "daily-both"},
        {"workflow": None},
    ],
)
def test_create_validation_errors(api: Api, changes: dict) -> None:
    body = explicit_body()
    for key, value in changes.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    response = api.create(body)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "400"
    assert response.json()["details"]
    assert api.sim.executions() == []


def test_timeout_bounds_are_inclusive(api: Api) -> None:
    assert api.create(explicit_body(workflowExecutionTimeoutSeconds=900)).status_code == 200
    assert api.create(explicit_body(workflowExecutionTimeoutSeconds=86400)).status_code == 200


def test_lifecycle_in_real_time() -> None:
    with SimulatorServer(SimulatorConfig(pending_seconds=0.15, running_seconds=0.15)) as sim:
        api = Api(sim)
        try:
            execution_id = api.create().json()["workflowExecutionId"]
            seen = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                status = api.get(execution_id).json()["status"]
                if not seen or seen[-1] != status:
                    seen.append(status)
                if status == "SUCCEEDED":
                    break
                time.sleep(0.03)
            assert seen[0] == "PENDING" and seen[-1] == "SUCCEEDED"
            assert set(seen) <= {"PENDING", "RUNNING", "SUCCEEDED"}
        finally:
            api.close()


def test_lifecycle_with_clock(api: Api) -> None:
    execution_id = api.create().json()["workflowExecutionId"]
    assert api.get(execution_id).json()["status"] == "PENDING"
    api.sim.advance_clock(0.25)
    assert api.get(execution_id).json()["status"] == "RUNNING"
    api.sim.advance_clock(0.3)
    done = api.get(execution_id).json()
    assert done["status"] == "SUCCEEDED"
    assert isinstance(done["executionTime"], int)
    assert done["outputColumns"] and {"name", "dataType", "columnType"} <= set(done["outputColumns"][0])
    assert {c["dataType"] for c in done["outputColumns"]} >= {"STRING", "LONG", "DOUBLE", "DATE", "TIMESTAMP"}
    assert done["validatedTime"].endswith("Z") and done["outputS3URI"]


def test_publishing_phase(api: Api) -> None:
    api.sim.set_scenario("pub", Scenario(publishing=True))
    execution_id = api.create(workflow_id="pub-1").json()["workflowExecutionId"]
    api.sim.advance_clock(0.55)
    assert api.get(execution_id).json()["status"] == "PUBLISHING"
    api.sim.advance_clock(1)
    assert api.get(execution_id).json()["status"] == "SUCCEEDED"


@pytest.mark.parametrize(
    ("kind", "final"),
    [
        ("fail", "FAILED"),
        ("rejected", "REJECTED"),
        ("cancelled", "CANCELLED"),
        ("stuck_pending", "PENDING"),
        ("stuck_running", "RUNNING"),
    ],
)
def test_scenarios_terminal_states(api: Api, kind: str, final: str) -> None:
    api.sim.set_scenario("scn", Scenario(kind=kind, failure_reason="Query timed out" if kind == "fail" else None))
    execution_id = api.create(workflow_id="scn-abc").json()["workflowExecutionId"]
    api.sim.advance_clock(3000)
    record = api.get(execution_id).json()
    assert record["status"] == final
    if kind == "fail":
        assert record["failureReason"] == "Query timed out"
        assert record["statusReason"] == "Query timed out"
        assert "outputColumns" not in record
    if kind == "rejected":
        assert record["failureReason"]


def test_unknown_status_then_continues(api: Api) -> None:
    api.sim.set_scenario("odd", Scenario(kind="unknown_status", unknown_status_seconds=1.0))
    execution_id = api.create(workflow_id="odd-1").json()["workflowExecutionId"]
    api.sim.advance_clock(0.3)
    assert api.get(execution_id).json()["status"] == "QUEUED_FOR_PROCESSING"
    api.sim.advance_clock(1.0)
    assert api.get(execution_id).json()["status"] == "RUNNING"
    api.sim.advance_clock(1.0)
    assert api.get(execution_id).json()["status"] == "SUCCEEDED"


def test_sql_error_scenario(api: Api) -> None:
    api.sim.set_scenario("bad", Scenario(kind="sql_error"))
    response = api.create(workflow_id="bad-1", sql="SELECT a FROM no_such_table")
    assert response.status_code == 400
    assert response.json() == {
        "code": "400",
        "details": "Unable to compile query. From line 1, column 15 to line 1, column 27: "
        "Object 'no_such_table' not found",
    }
    assert api.sim.executions() == []


def test_daily_quota_429_with_retry_after() -> None:
    with SimulatorServer(SimulatorConfig(**FAST_LIFECYCLE, daily_quota=2)) as sim:
        api = Api(sim)
        try:
            assert api.create().status_code == 200
            assert api.create().status_code == 200
            response = api.create()
            assert response.status_code == 429
            assert response.json()["code"] == "429"
            assert 0 < int(response.headers["Retry-After"]) <= 86400
            assert len(sim.executions()) == 2
            sim.advance_clock(86400)  # next UTC day on the simulator clock
            api.token = get_token(sim).json()["access_token"]  # the old one expired
            assert api.create().status_code == 200
        finally:
            api.close()


def test_list_requires_filter_and_bounds_limit(api: Api) -> None:
    assert api.list().status_code == 400
    assert api.list(workflowId="x", limit=101).status_code == 400
    assert api.list(workflowId="x", limit=0).status_code == 400
    assert api.list(minCreationTime="2020-01-01T00:00:00").json() == {"executions": []}
    assert api.list(workflowId="x", nextToken="garbage!").status_code == 400


def test_list_pagination_order_and_filters(api: Api) -> None:
    ids = []
    for i in range(7):
        ids.append(api.create(workflow_id=f"pag-{i % 2}").json()["workflowExecutionId"])
    pages, token = [], None
    while True:
        params = {"minCreationTime": "2000-01-01T00:00:00", "limit": 3}
        if token:
            params["nextToken"] = token
        body = api.list(**params).json()
        pages.append([e["workflowExecutionId"] for e in body["executions"]])
        token = body.get("nextToken")
        if not token:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for page in pages for i in page] == list(reversed(ids))
    ascending = api.list(minCreationTime="2000-01-01T00:00:00", sortAscending="true").json()["executions"]
    assert [e["workflowExecutionId"] for e in ascending] == ids
    only = api.list(workflowId="pag-1").json()["executions"]
    assert {e["workflowExecutionId"] for e in only} == {ids[1], ids[3], ids[5]}
    future = api.list(minCreationTime="2999-01-01T00:00:00").json()["executions"]
    assert future == []


def test_cancel_rules_and_cancelled_hidden_from_list(api: Api) -> None:
    pending = api.create().json()["workflowExecutionId"]
    cancelled = api.cancel(pending)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "CANCELLED"
    assert api.get(pending).json()["status"] == "CANCELLED"
    assert api.cancel(pending).status_code == 400
    running = api.create().json()["workflowExecutionId"]
    api.sim.advance_clock(0.25)
    assert api.get(running).json()["status"] == "RUNNING"
    assert api.cancel(running).status_code == 200
    done = api.succeeded()
    assert api.cancel(done).status_code == 400
    bad = api.request("PUT", f"/workflowExecutions/{done}", json={"status": "RUNNING"})
    assert bad.status_code == 400
    assert api.cancel("no-such-id").status_code == 404
    listed = {e["workflowExecutionId"] for e in api.list(workflowId="daily-t1").json()["executions"]}
    assert listed == {done}
    with_cancelled = api.list(workflowId="daily-t1", includeCancelled="true").json()["executions"]
    assert {e["workflowExecutionId"] for e in with_cancelled} == {pending, running, done}


def test_get_unknown_execution_is_404(api: Api) -> None:
    response = api.get("00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert response.json()["code"] == "404"


def test_execution_invisible_from_other_instance(sim: SimulatorServer, api: Api) -> None:
    execution_id = api.create().json()["workflowExecutionId"]
    sim.register_instance(OTHER_INSTANCE_ID, ADVERTISER_ID, MARKETPLACE_ID)
    other = Api(sim, instance=OTHER_INSTANCE_ID)
    try:
        assert other.get(execution_id).status_code == 404
    finally:
        other.close()


def test_non_explicit_window_types(api: Api) -> None:
    body = {"workflow": {"workflowId": "w-1", "sqlQuery": "SELECT 1 FROM t"}, "timeWindowType": "MOST_RECENT_WEEK"}
    response = api.create(body)
    assert response.status_code == 200
    record = response.json()
    assert record["timeWindowStart"].endswith("Z") and record["timeWindowEnd"] > record["timeWindowStart"]
    default = api.create({"workflow": {"workflowId": "w-2", "sqlQuery": "SELECT 1 FROM t"}})
    assert default.status_code == 200
