"""Saved workflows over plain HTTP: paging, updates, errors, faults and persistence.

Why here: the simulator plays AMC, whose saved workflows `amc-pipeline sync` keeps and executions
may name; these pin the endpoints' behaviour down with nothing between the test and the simulator
(the client's side is in amc_pipeline_tests/test_sync.py and the contract tests). Create/get/delete
and an execution by workflowId are in
test_persistence_and_admin.py.
"""

from __future__ import annotations

from pathlib import Path

from amc_pipeline.simulator import Fault, SimulatorConfig, SimulatorServer
from amc_pipeline_tests.constants import FAST_LIFECYCLE

from .api import Api

WORKFLOW_CT = "application/vnd.amcworkflows.v1+json"


def save(api: Api, workflow_id: str, sql: str = "SELECT 1 FROM t", **extra: str) -> None:
    answer = api.request("POST", "/workflows", json={"workflowId": workflow_id, "sqlQuery": sql, **extra})
    assert answer.status_code == 200, answer.text


def test_list_pages_with_next_token(api: Api) -> None:
    for name in ("wf-a", "wf-b", "wf-c"):
        save(api, name)
    first = api.request("GET", "/workflows", params={"limit": 2})
    assert first.status_code == 200 and first.headers["content-type"].startswith(WORKFLOW_CT)
    body = first.json()
    assert [w["workflowId"] for w in body["workflows"]] == ["wf-a", "wf-b"] and body["nextToken"]
    second = api.request("GET", "/workflows", params={"limit": 2, "nextToken": body["nextToken"]}).json()
    assert [w["workflowId"] for w in second["workflows"]] == ["wf-c"] and "nextToken" not in second
    assert api.request("GET", "/workflows", params={"limit": "many"}).status_code == 400
    assert api.request("GET", "/workflows", params={"nextToken": "not-a-token"}).status_code == 400


def test_update_merges_and_checks_the_body(api: Api) -> None:
    save(api, "wf-u", "SELECT 1 FROM t", description="first")
    assert api.request("PUT", "/workflows/wf-u", json={"sqlQuery": "SELECT 2 FROM t"}).status_code == 200
    assert api.request("GET", "/workflows/wf-u").json() == {
        "workflowId": "wf-u",
        "sqlQuery": "SELECT 2 FROM t",
        "description": "first",
    }
    mismatch = api.request("PUT", "/workflows/wf-u", json={"workflowId": "other", "sqlQuery": "SELECT 3"})
    assert mismatch.status_code == 400 and "does not match" in mismatch.json()["details"]
    assert api.request("PUT", "/workflows/wf-u", json={"sqlQuery": "  "}).status_code == 400
    assert api.request("PUT", "/workflows/wf-missing", json={"sqlQuery": "SELECT 1"}).status_code == 404
    assert api.request("GET", "/workflows/wf-u").json()["sqlQuery"] == "SELECT 2 FROM t"  # refused edits left it


def test_list_is_empty_after_delete(api: Api) -> None:
    save(api, "wf-d")
    assert api.request("DELETE", "/workflows/wf-d").status_code == 200
    assert api.request("GET", "/workflows").json() == {"workflows": []}


def test_workflow_errors_use_the_workflows_content_type(api: Api) -> None:
    unauthenticated = api.request("GET", "/workflows", headers=api.headers(Authorization=None))
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["content-type"].startswith(WORKFLOW_CT)
    assert api.request("POST", "/workflows", content=b"{not json").status_code == 400


def test_throttle_fault_on_workflows(api: Api) -> None:
    api.sim.add_fault(Fault(kind="throttle", endpoint="workflows", times=1, retry_after=4))
    throttled = api.request("GET", "/workflows")
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "4"
    assert throttled.headers["content-type"].startswith(WORKFLOW_CT)
    assert api.request("GET", "/workflows").status_code == 200
    assert api.sim.stats()["workflows"] == 2


def test_saved_workflows_survive_restart(tmp_path: Path) -> None:
    db = tmp_path / "sim.sqlite"
    with SimulatorServer(SimulatorConfig(**FAST_LIFECYCLE), db_path=db) as sim:
        api = Api(sim)
        try:
            save(api, "wf-keep", "SELECT 7 FROM t")
            save(api, "wf-gone")
            assert api.request("DELETE", "/workflows/wf-gone").status_code == 200
        finally:
            api.close()
    with SimulatorServer(SimulatorConfig(**FAST_LIFECYCLE), db_path=db) as sim:
        api = Api(sim)
        try:
            listed = api.request("GET", "/workflows").json()["workflows"]
            assert listed == [{"workflowId": "wf-keep", "sqlQuery": "SELECT 7 FROM t"}]
        finally:
            api.close()
