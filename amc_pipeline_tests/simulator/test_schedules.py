"""AMC schedules over plain HTTP: CRUD per the OpenAPI document, and runs on the simulator clock.

The clock is moved, never waited for: a schedule made "yesterday" (clock set back) has run at each
boundary since once the clock is back, each run created at its own time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from amc_pipeline.simulator import SimulatorConfig, SimulatorServer
from amc_pipeline_tests.constants import FAST_LIFECYCLE

from .api import Api

SCHEDULE_CT = "application/vnd.amcschedules.v1+json"
DAY = 86400


def save_workflow(api: Api, workflow_id: str = "sched") -> None:
    answer = api.request("POST", "/workflows", json={"workflowId": workflow_id, "sqlQuery": "SELECT 1 FROM t"})
    assert answer.status_code == 200, answer.text


def schedule(**fields: object) -> dict[str, object]:
    return {"scheduleId": "s1", "workflowId": "sched", "aggregationPeriod": "Daily", "aggregationHourUtc": 0,
            **fields}


def test_crud_and_validation(api: Api) -> None:
    assert api.request("POST", "/schedules", json=schedule()).status_code == 404  # no such workflow yet
    save_workflow(api)
    created = api.request("POST", "/schedules", json=schedule())
    assert created.status_code == 200 and created.json() == {}
    assert created.headers["content-type"].startswith(SCHEDULE_CT)
    assert api.request("POST", "/schedules", json=schedule()).status_code == 400  # already exists
    got = api.request("GET", "/schedules/s1").json()
    assert got["aggregationPeriod"] == "Daily" and got["scheduleEnabled"] is True
    assert set(got) == {"scheduleId", "workflowId", "aggregationPeriod", "aggregationHourUtc", "aggregationStartDay",
                        "scheduleEnabled", "disableAggregationControls", "requireSyntheticData"}
    weekly = schedule(aggregationPeriod="Weekly", aggregationStartDay="Friday")
    updated = api.request("PUT", "/schedules/s1", json=weekly)
    assert updated.status_code == 200
    assert api.request("GET", "/schedules/s1").json()["aggregationStartDay"] == "Friday"
    for bad in (schedule(aggregationPeriod="Hourly"), schedule(aggregationHourUtc=24),
                schedule(aggregationStartDay="Someday"), schedule(scheduleEnabled="yes"), schedule(scheduleId="")):
        answer = api.request("PUT", "/schedules/s1", json=bad)
        assert answer.status_code == 400 and set(answer.json()) == {"code", "details"}, bad
    assert api.request("PUT", "/schedules/s1", json=schedule(scheduleId="other")).status_code == 400
    api.request("POST", "/schedules", json=schedule(scheduleId="s2"))
    first = api.request("GET", "/schedules", params={"limit": 1}).json()
    second = api.request("GET", "/schedules", params={"limit": 1, "nextToken": first["nextToken"]}).json()
    assert [s["scheduleId"] for s in first["schedules"] + second["schedules"]] == ["s1", "s2"]
    assert api.request("DELETE", "/schedules/s2").status_code == 200
    assert api.request("GET", "/schedules/s2").status_code == 404
    assert api.sim.stats()["schedules"] >= 10


def test_daily_runs_appear_on_their_cadence_listable_by_workflow_id(api: Api) -> None:
    save_workflow(api)
    api.sim.advance_clock(-3 * DAY)
    assert api.request("POST", "/schedules", json=schedule(aggregationHourUtc=0)).status_code == 200
    assert api.list(workflowId="sched").json()["executions"] == []  # nothing runs before its hour
    api.sim.advance_clock(3 * DAY)
    runs = api.list(workflowId="sched", sortAscending="true").json()["executions"]
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert [r["timeWindowStart"] for r in runs] == [
        (today - timedelta(days=d)).strftime("%Y-%m-%dT%H:%M:%SZ") for d in (3, 2, 1)]
    for run in runs:
        assert run["executionCategory"] == "SCHEDULED" and run["status"] == "SUCCEEDED"
        assert run["createTime"] == run["timeWindowEnd"]  # started at the aggregation hour, for the day before
    assert api.list(workflowId="sched").json()["executions"] == list(reversed(runs))  # no second catch-up
    assert api.create(workflow_id="adhoc-1").status_code == 200  # scheduled runs left the ad hoc quota alone
    assert api.sim.state.quota_used(api.instance, api.sim.state.now()) == 1


def test_disabled_and_weekly_schedules(api: Api) -> None:
    save_workflow(api)
    api.sim.advance_clock(-15 * DAY)
    api.request("POST", "/schedules", json=schedule(scheduleId="off", scheduleEnabled=False))
    api.request("POST", "/schedules", json=schedule(scheduleId="week", aggregationPeriod="Weekly",
                                                   aggregationStartDay="Monday", aggregationHourUtc=6))
    api.sim.advance_clock(15 * DAY)
    runs = api.list(workflowId="sched").json()["executions"]
    assert len(runs) in (2, 3)  # the Mondays 06:00 UTC of the last 15 days
    for run in runs:
        end = datetime.fromisoformat(run["timeWindowEnd"].replace("Z", "+00:00"))
        start = datetime.fromisoformat(run["timeWindowStart"].replace("Z", "+00:00"))
        assert (end.weekday(), end.hour, end - start) == (0, 6, timedelta(days=7))


def test_schedules_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "sim.db"
    with SimulatorServer(SimulatorConfig(**FAST_LIFECYCLE), db_path=db) as sim:
        api = Api(sim)
        save_workflow(api)
        api.request("POST", "/schedules", json=schedule())
        api.close()
    with SimulatorServer(SimulatorConfig(**FAST_LIFECYCLE), db_path=db) as sim:
        api = Api(sim)
        assert api.request("GET", "/schedules/s1").json()["workflowId"] == "sched"
        api.close()
