"""Executions this pipeline did not create: an AMC schedule's runs and ones started elsewhere.

Against the simulator over HTTP and a real (test) Dagster instance running the project's
Definitions: the `amc_monitor` job adopts, the landing sensor requests each partition, and the
workflow job lands it. The simulator's clock is moved back and forth instead of waiting for days.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from amc_pipeline.definitions import build_definitions
from amc_pipeline.monitor.adopt import adopt_executions
from amc_pipeline.partitions import partitions_def
from amc_pipeline.store.states import ORIGIN_EXTERNAL, ORIGIN_SCHEDULE
from amc_pipeline.sync import apply, plan
from amc_pipeline_tests.harness import Rig, rig
from amc_pipeline_tests.results.test_assets import resources, sim_environment
from amc_pipeline_tests.simulator.api import Api

DAY = 86400
TODAY = datetime.now(UTC).date()
START = (TODAY - timedelta(days=30)).isoformat()
SQL = "SELECT campaign, SUM(impressions) AS impressions FROM dsp_impressions GROUP BY 1"
SCHEDULED = {"name": "reach", "sql": SQL, "saved_workflow": True, "start_date": START,
             "amc_schedule": {"period": "daily", "hour_utc": 0}}
EXTERNAL = {"name": "spend", "sql": SQL, "saved_workflow": True, "start_date": START, "adopt_external": True}


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("AMC_PIPELINE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def day(offset: int) -> str:
    return (TODAY + timedelta(days=offset)).isoformat()


def start_external(r: Rig, workflow_id: str, start: str, end: str) -> str:
    """Someone else (the AMC console, another tool) runs the saved workflow for [start, end)."""
    api = Api(r.sim)
    try:
        answer = api.create({"workflowId": workflow_id, "timeWindowType": "EXPLICIT", "timeWindowStart": start,
                             "timeWindowEnd": end, "timeWindowTimeZone": "UTC"})
        assert answer.status_code == 200, answer.text
        return answer.json()["workflowExecutionId"]
    finally:
        api.close()


def land_all(defs: dg.Definitions, instance: dg.DagsterInstance, r: Rig, workflow: str) -> list[str]:
    """Evaluate the landing sensor tick after tick (it asks for at most max_landings_per_instance runs
    of an instance at once) and run each partition it requests; returns the landed keys."""
    sensor = defs.resolve_sensor_def("amc_landing_sensor")
    job = defs.resolve_job_def(f"amc_{workflow}_job")
    landed = []
    while True:
        context = dg.build_sensor_context(instance=instance, repository_def=defs.get_repository_def(),
                                          resources={"amc_store": resources(r)["amc_store"]})
        requests = sensor.evaluate_tick(context).run_requests
        if not requests:
            return sorted(landed)
        for request in requests:
            result = job.execute_in_process(instance=instance, partition_key=request.partition_key,
                                            tags=request.tags)
            [event] = result.get_asset_materialization_events()
            assert result.success and event.materialization.metadata["amc/origin"].value in ("schedule", "external")
            landed.append(request.partition_key)


def materialized(instance: dg.DagsterInstance, r: Rig, workflow: str) -> list[str]:
    pdef = partitions_def(r.config.workflow(workflow))
    return sorted(instance.get_materialized_partitions(dg.AssetKey(["amc", workflow])) & set(
        pdef.get_partition_keys()))


def test_daily_amc_schedule_lands_partitions_with_no_ad_hoc_create(env, monkeypatch):
    with rig([SCHEDULED], database_url=f"sqlite:///{env / 's.db'}") as r:
        sim_environment(monkeypatch, r)
        r.sim.advance_clock(-4 * DAY)  # the schedule is made four days ago (simulator time) ...
        assert [i.action for i in apply(r.client, r.config, plan(r.client, r.config))] == ["create", "create"]
        r.sim.advance_clock(4 * DAY)  # ... and has run at each 00:00 UTC since, without us
        runs = [e for e in r.sim.executions() if e["executionCategory"] == "SCHEDULED"]
        assert sorted(e["timeWindowStartOriginal"][:10] for e in runs) == [day(-4), day(-3), day(-2), day(-1)]

        defs = build_definitions(r.config)
        with dg.instance_for_test() as instance:
            sensor = defs.resolve_sensor_def("amc_adoption_sensor")  # the monitor sensor sees an empty store
            [request] = sensor.evaluate_tick(dg.build_sensor_context(instance=instance)).run_requests
            assert request.run_key.startswith("adopt:") and request.job_name in (None, "amc_monitor")
            # A schedule or a backfill may ask for a window AMC's schedule has not run: it waits, no create.
            assert defs.resolve_job_def("amc_reach_job").execute_in_process(
                instance=instance, partition_key=day(-6)).success
            monitor = defs.resolve_job_def("amc_monitor")
            assert monitor.execute_in_process(instance=instance).success
            r.drive(lambda: all(r.status("reach", day(d)) == "SUCCESS" for d in range(-4, 0)))
            assert land_all(defs, instance, r, "reach") == [day(-4), day(-3), day(-2), day(-1)]
            assert monitor.execute_in_process(instance=instance).success  # a second pass adopts nothing new

            assert materialized(instance, r, "reach") == [day(-4), day(-3), day(-2), day(-1)]
            assert r.status("reach", day(-6)) == "QUEUED"
            assert not r.store.due_summary(datetime.now(UTC)).any_due  # the waiting window keeps the sensor quiet
        assert r.sim.stats().get("create", 0) == 0  # zero ad hoc executions: no quota spent
        origins = {r.store.get_live("reach", day(d)).attempt.origin for d in range(-4, 0)}
        assert origins == {ORIGIN_SCHEDULE}
        assert r.store.submitted_since(r.config.instances[0].instance_id, datetime.now(UTC) - 7 * timedelta(1)) == 0


def test_external_execution_for_a_known_window_is_adopted_once(env, monkeypatch):
    key = day(-3)
    with rig([EXTERNAL], database_url=f"sqlite:///{env / 's.db'}") as r:
        sim_environment(monkeypatch, r)
        apply(r.client, r.config, plan(r.client, r.config))
        defs = build_definitions(r.config)
        with dg.instance_for_test() as instance:
            # The window is requested here (QUEUED) while someone starts the same window in the console.
            job = defs.resolve_job_def("amc_spend_job")
            assert job.execute_in_process(instance=instance, partition_key=key).success
            theirs = start_external(r, "spend", f"{key}T00:00:00", f"{day(-2)}T00:00:00")
            monitor = defs.resolve_job_def("amc_monitor")
            assert monitor.execute_in_process(instance=instance).success
            live = r.store.get_live("spend", key)
            assert (live.attempt.amc_execution_id, live.attempt.origin) == (theirs, ORIGIN_EXTERNAL)

            # A second external run of the window while the first is in flight or done: not adopted.
            second = start_external(r, "spend", f"{key}T00:00:00", f"{day(-2)}T00:00:00")
            r.drive(lambda: r.status("spend", key) == "SUCCESS")
            again = adopt_executions(r.store, r.client, r.config)
            assert again.adopted == 0 and again.in_flight == 1
            assert monitor.execute_in_process(instance=instance).success
            assert land_all(defs, instance, r, "spend") == [key]

            assert r.store.get_by_amc_id(second) is None
            assert [a.amc_execution_id for a in r.store.attempts_for(live.id)] == [theirs]
            assert r.sim.stats()["create"] == 2  # the two external ones: the pipeline created none
            assert materialized(instance, r, "spend") == [key]


def test_external_execution_for_an_unknown_window_is_reported_not_landed(env, monkeypatch):
    with rig([EXTERNAL], database_url=f"sqlite:///{env / 's.db'}") as r:
        sim_environment(monkeypatch, r)
        apply(r.client, r.config, plan(r.client, r.config))
        odd = start_external(r, "spend", f"{day(-3)}T06:00:00", f"{day(-2)}T06:00:00")  # not a daily window
        early = start_external(r, "spend", "2020-01-01T00:00:00", "2020-01-02T00:00:00")  # before start_date
        r.sim.advance_clock(60)

        report = adopt_executions(r.store, r.client, r.config)
        assert report.adopted == 0 and len(report.refused) == 2
        assert any(odd in m and "no daily partition" in m for m in report.refused)
        assert any(early in m for m in report.refused)

        defs = build_definitions(r.config)
        with dg.instance_for_test() as instance:
            result = defs.resolve_job_def("amc_monitor").execute_in_process(instance=instance)
            assert result.success
            warnings = [e.message for e in instance.all_logs(result.run_id) if e.level == 30 and e.message]
            assert any(odd in w for w in warnings)  # reported in the run's log
            assert land_all(defs, instance, r, "spend") == []
            assert materialized(instance, r, "spend") == []
        assert r.store.get_by_amc_id(odd) is None and r.store.get_by_amc_id(early) is None
        assert r.store.list_executions(limit=10) == []


def test_a_failed_scheduled_run_is_retried_like_our_own(env):
    from amc_pipeline.simulator import Scenario

    with rig([SCHEDULED], database_url=f"sqlite:///{env / 's.db'}", scenarios={"reach": Scenario(kind="fail")}) as r:
        r.sim.advance_clock(-DAY)
        apply(r.client, r.config, plan(r.client, r.config))
        r.sim.advance_clock(DAY)  # one scheduled run, for yesterday; it fails for a retryable reason
        assert adopt_executions(r.store, r.client, r.config).adopted == 1
        r.sim.set_scenario("reach", Scenario(kind="succeed"))
        r.drive(lambda: r.status("reach", day(-1)) == "SUCCESS")
        attempts = r.store.attempts_for(r.store.get_live("reach", day(-1)).id)
        assert [(a.status, a.origin) for a in attempts] == [("FAILED", ORIGIN_SCHEDULE), ("SUCCESS", None)]
        assert r.sim.stats()["create"] == 1  # the retry, by workflowId
