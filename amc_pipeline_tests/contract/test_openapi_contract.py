"""The real API as the contract: what our client sends and what the simulator answers, for every endpoint
the project uses, validates against Amazon's OpenAPI document ("Workflow Management Service" 3.0).

Every field, content type or shape the document lacks but we keep is listed in `KEPT` with its
evidence, and the evidence is checked: a field "recorded live" must appear in the response Amazon
recorded from the live service (its Postman collection, in the shared folder beside the repository),
and a quoted sentence must appear in the API notes (`amc-api.md`, same folder). A deviation that
stops occurring must leave the list too, so the list stays the truth.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amc_pipeline.config import InstanceConfig
from amc_pipeline.simulator import Scenario, SimulatorServer
from amc_pipeline_tests.constants import INSTANCE
from amc_pipeline_tests.contract.openapi import FLAT, Exchange, check, document, operation_for, resolve
from amc_pipeline_tests.contract.scenario import run_scenario
from amc_pipeline_tests.harness import sim_config
from amc_pipeline_tests.recordings import COLLECTION, recorded_items

NOTES = COLLECTION.parents[1] / "amc-api.md"

#: The endpoints the project calls (executions, download URLs, saved workflows, schedules).
USED = {
    "POST /workflowExecutions", "GET /workflowExecutions", "GET /workflowExecutions/{workflowExecutionId}",
    "PUT /workflowExecutions/{workflowExecutionId}", "GET /workflowExecutions/{workflowExecutionId}/downloadUrls",
    "GET /workflows/{workflowId}", "POST /workflows", "PUT /workflows/{workflowId}",
    "GET /schedules", "POST /schedules", "PUT /schedules/{scheduleId}",
}

#: Recorded live responses in Amazon's Postman collection, by the operation they answer.
RECORDED_AS = {
    "POST /workflowExecutions": "Creates a new workflow execution",
    "GET /workflowExecutions": "Returns a list of workflow executions",
    "GET /workflowExecutions/{workflowExecutionId}": "Gets status information about the requested workflow execution.",
    "GET /workflows/{workflowId}": "Get the requested workflow",
    "POST /workflows": "Create a workflow",
}
LIVE = "recorded live"  # evidence: the field is in the recorded live response of the same operation
EXECUTION_OPS = ("POST /workflowExecutions", "GET /workflowExecutions", "GET /workflowExecutions/{workflowExecutionId}")
LIVE_EXECUTION_FIELDS = ("dataGaps", "executionCategory", "ignoreDataGaps", "parameterValues")
LIVE_SUCCESS_FIELDS = ("availableTimeBeforeWindowSecs", "executionTime", "outputColumns", "validatedTime")
REASON = "A failure reason may come as `failureReason` or `statusReason` (sources disagree); read either."

#: (kind, operation, field) -> evidence: LIVE, or a sentence of amc-api.md.
KEPT: dict[tuple[str, str, str], str] = {
    # Flat records: the document wraps one record, the live service does not.
    ("response shape", "POST /workflowExecutions", FLAT.format(key="workflowExecution")): LIVE,
    ("response shape", "GET /workflowExecutions/{workflowExecutionId}", FLAT.format(key="workflowExecution")): LIVE,
    ("response shape", "GET /workflows/{workflowId}", FLAT.format(key="workflow")): LIVE,
    # The live create answer is `{}` typed application/octet-stream.
    ("response content-type", "POST /workflows", "application/octet-stream"): LIVE,
    # Bodies are sent as application/json; the document names only the vnd types.
    ("request content-type", "*", "application/json"):
        "Plain `application/json` works; the spec also names",
    ("request field", "POST /workflowExecutions", "ignoreDataGaps"):
        "`ignoreDataGaps` (bool; sent by clients, echoed by the service,\n  absent from the spec)",
    **{("response field", op, ("executions[]." if op == "GET /workflowExecutions" else "") + name): LIVE
       for op in EXECUTION_OPS for name in LIVE_EXECUTION_FIELDS},
    **{("response field", op, ("executions[]." if op == "GET /workflowExecutions" else "") + name): LIVE
       for op in EXECUTION_OPS[1:] for name in LIVE_SUCCESS_FIELDS},
    **{("response field", op, ("executions[]." if op == "GET /workflowExecutions" else "") + name): REASON
       for op in EXECUTION_OPS[1:] for name in ("failureReason", "statusReason")},
}


def kept(deviation: tuple[str, str, str]) -> bool:
    kind, op, name = deviation
    return deviation in KEPT or (kind, "*", name) in KEPT


@pytest.fixture(scope="module")
def exchanges() -> Iterator[list[Exchange]]:
    with SimulatorServer(sim_config(daily_quota=100)) as sim:
        found = run_scenario(sim, InstanceConfig(**INSTANCE))
    for exchange in found:
        exchange.validate()
    yield found


def test_every_used_endpoint_was_exercised(exchanges: list[Exchange]) -> None:
    assert {e.operation for e in exchanges} == USED
    assert {e.status for e in exchanges} >= {200, 400, 404}  # error answers are checked too


def test_requests_and_responses_validate_against_the_document(exchanges: list[Exchange]) -> None:
    problems = [p for e in exchanges for p in e.problems]
    assert problems == []


def test_every_deviation_is_kept_on_purpose_and_still_occurs(exchanges: list[Exchange]) -> None:
    seen = {d for e in exchanges for d in e.deviations}
    assert sorted(d for d in seen if not kept(d)) == []
    occurring = {k for k in KEPT if k in seen or (k[1] == "*" and any((k[0], k[2]) == (d[0], d[2]) for d in seen))}
    assert sorted(set(KEPT) - occurring) == []


def recorded() -> dict[str, dict[str, Any]]:
    """The recorded live responses `RECORDED_AS` names, by request name (bodies and headers)."""
    found: dict[str, dict[str, Any]] = {}
    for item in recorded_items():
        if item["name"] in RECORDED_AS.values() and item["name"] not in found:
            response = item["response"][0]
            headers = {h["key"].lower(): h["value"] for h in response.get("header") or []}
            found[item["name"]] = {"body": json.loads(response.get("body") or "null"), "headers": headers}
    return found


def has_path(value: Any, path: str) -> bool:
    head, _, rest = path.partition(".")
    if head.endswith("[]"):
        items = value.get(head[:-2]) if isinstance(value, dict) else None
        return bool(items) and all(has_path(item, rest) if rest else True for item in items)
    return isinstance(value, dict) and head in value and (not rest or has_path(value[head], rest))


def test_the_evidence_of_each_kept_deviation() -> None:
    if not COLLECTION.exists() or not NOTES.exists():
        pytest.skip("the shared folder (recorded collection, API notes) is not beside the repository")
    live, notes = recorded(), NOTES.read_text()
    for (kind, op, name), evidence in KEPT.items():
        if evidence != LIVE:
            assert evidence in notes, (kind, op, name)
            continue
        response = live[RECORDED_AS[op]]
        if kind == "response field":
            assert has_path(response["body"], name), (op, name)
        elif kind == "response shape":
            key = name.removeprefix("<flat: not wrapped in ").removesuffix(">")
            assert key not in response["body"] and ("workflowId" in response["body"]), (op, name)
        elif kind == "response content-type":
            assert response["headers"]["content-type"] == name, (op, name)


def test_statuses_of_the_older_api_are_outside_the_document() -> None:
    """The simulator can play PUBLISHING / REJECTED (kept for the client's robustness): the document
    lists neither, so they are scenarios, never the default."""
    schema = resolve({"$ref": "#/components/schemas/WorkflowExecution"})
    assert set(schema["properties"]["status"]["enum"]) == {"PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"}
    with SimulatorServer(sim_config(publishing_seconds=30)) as sim:
        from amc_pipeline_tests.simulator.api import Api

        sim.set_scenario("rej", Scenario(kind="rejected"))
        api = Api(sim)
        try:
            published = api.create(workflow_id="pub-1").json()["workflowExecutionId"]
            rejected = api.create(workflow_id="rej-1").json()["workflowExecutionId"]
            sim.advance_clock(5)
            for execution_id, status in ((published, "PUBLISHING"), (rejected, "REJECTED")):
                answer = api.get(execution_id).json()
                assert answer["status"] == status
                problems, _ = check(answer, schema)
                assert problems == [f"status: '{status}' is not one of ['CANCELLED', 'FAILED', 'PENDING', "
                                    "'RUNNING', 'SUCCEEDED']"]
        finally:
            api.close()
    assert "`PUBLISHING` (still in progress) and `REJECTED` (terminal\nfailure)" in NOTES.read_text() \
        if NOTES.exists() else True


def test_the_vendored_document_is_amazons() -> None:
    info = document()["info"]
    assert (document()["openapi"], info["title"], info["version"]) == ("3.0.1", "Workflow Management Service", "3.0")
    license_text = (Path(__file__).parent / "openapi" / "LICENSE").read_text()
    assert license_text.startswith("MIT License")
    template, op = operation_for("GET", "/amc/reporting/amcx/schedules/s1")
    assert (template, op["operationId"]) == ("/amc/reporting/{instanceId}/schedules/{scheduleId}", "getSchedule")


def test_the_checker_catches_wrong_types_enums_and_unknown_fields() -> None:
    """The oracle itself: a bad request is a problem, an undocumented field a deviation."""
    exec_ct = "application/vnd.amcworkflowexecutions.v1+json"
    bad = Exchange("POST", "/amc/reporting/amcx/workflowExecutions", {"bogus": "1"},
                   {"amazon-advertising-api-clientid": "c", "content-type": exec_ct},
                   {"workflowId": "w", "timeWindowType": "EXPLICITLY", "parameterValues": {"a": 1}, "typo": True},
                   status=200, answer={"workflowExecution": {"workflowExecutionId": 5}},
                   answer_type=exec_ct)
    bad.validate()
    assert any("EXPLICITLY" in p for p in bad.problems) and any("parameterValues/a" in p for p in bad.problems)
    assert any("workflowExecution/workflowExecutionId" in p for p in bad.problems)
    assert any("Amazon-Advertising-API-AdvertiserId" in p for p in bad.problems)
    assert bad.deviations == {("request field", "POST /workflowExecutions", "typo"),
                              ("request query", "POST /workflowExecutions", "bogus")}
