"""`amc_checks_sensor` follows the store: a run only when a check's answer changes, for that workflow only."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from amc_pipeline.definitions import build_definitions
from amc_pipeline.simulator import Scenario
from amc_pipeline_tests.harness import rig
from amc_pipeline_tests.results.test_assets import resources, sim_environment

WORKFLOWS = [
    {"name": "good", "sql": "SELECT 1"},
    {"name": "broken", "sql": "SELECT x FROM nowhere"},
    {"name": "slowpoke", "sql": "SELECT 2", "stuck_pending_minutes": 1},
]
SCENARIOS = {"broken": Scenario(kind="sql_error"), "slowpoke": Scenario(kind="stuck_pending"),
             "good": Scenario(kind="succeed", rows=3)}


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("AMC_PIPELINE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def _tick(sensor, instance, r, cursor):
    context = dg.build_sensor_context(instance=instance, cursor=cursor,
                                      resources={"amc_store": resources(r)["amc_store"]})
    result = sensor.evaluate_tick(context)
    return result, context.cursor


def _checked(requests) -> set[tuple[str, str]]:
    return {(k.asset_key.path[-1], k.name) for req in requests for k in req.asset_check_keys}


def test_checks_run_only_when_an_answer_changes(env, monkeypatch):
    with rig(WORKFLOWS, database_url=f"sqlite:///{env / 's.db'}", scenarios=SCENARIOS) as r:
        sim_environment(monkeypatch, r)
        defs = build_definitions(r.config)
        sensor = defs.resolve_sensor_def("amc_checks_sensor")
        with dg.instance_for_test() as instance:
            first, cursor = _tick(sensor, instance, r, None)
            assert len(first.run_requests) == 1  # nothing evaluated yet: every check once
            assert ("broken", "no_failed_executions") in _checked(first.run_requests)
            assert ("execution_metrics", "amc_pipeline_healthy") in _checked(first.run_requests)

            idle, cursor = _tick(sensor, instance, r, cursor)
            assert idle.run_requests == [] and "no check would change" in idle.skip_message

            # AMC rejects the SQL: only broken's checks are re-evaluated, and they say why.
            r.request("broken", "2026-10-05")
            r.drive(lambda: r.status("broken", "2026-10-05") == "FAILED")
            failed, cursor = _tick(sensor, instance, r, cursor)
            assert _checked(failed.run_requests) == {("broken", "no_failed_executions"),
                                                     ("broken", "no_stuck_executions")}
            job = defs.resolve_job_def("amc_execution_checks")
            subset = job.get_subset(asset_check_selection=set(failed.run_requests[0].asset_check_keys))
            run = subset.execute_in_process(instance=instance)
            [evaluation] = [e for e in run.get_asset_check_evaluations() if e.check_name == "no_failed_executions"]
            assert not evaluation.passed and "Unable to compile" in evaluation.metadata["failed"].value

            # A stuck threshold passing is a change too (the execution itself did not move).
            r.request("slowpoke", "2026-10-05")
            r.drive(lambda: r.status("slowpoke", "2026-10-05") == "PENDING")
            _, cursor = _tick(sensor, instance, r, cursor)
            slow = r.store.get_live("slowpoke", "2026-10-05").attempt
            r.store.update_attempt(slow.id, status_changed_at=datetime.now(UTC) - timedelta(minutes=5))
            stuck, cursor = _tick(sensor, instance, r, cursor)
            assert ("slowpoke", "no_stuck_executions") in _checked(stuck.run_requests)
            assert not any(k.asset_key.path[-1] == "good" for k in stuck.run_requests[0].asset_check_keys)

            # Re-queued after the failure and landed: broken's failed check changes back.
            r.sim.set_scenario("broken", Scenario(kind="succeed", rows=2))
            r.request("broken", "2026-10-05", force_new=True)
            r.drive(lambda: r.status("broken", "2026-10-05") == "SUCCESS")
            recovered, cursor = _tick(sensor, instance, r, cursor)
            assert ("broken", "no_failed_executions") in _checked(recovered.run_requests)
