"""`amc_checks_sensor` follows the store: a run only when a check's answer changes, for that workflow only."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from amc_pipeline.definitions import build_definitions
from amc_pipeline.simulator import Scenario
from amc_pipeline_tests.harness import rig
from amc_pipeline_tests.health.test_health import SCENARIOS, WORKFLOWS
from amc_pipeline_tests.results.test_assets import resources, sim_environment


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("AMC_PIPELINE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def _tick(sensor, instance, r, cursor):
    context = dg.build_sensor_context(instance=instance, cursor=cursor,
                                      resources={"amc_store": resources(r)["amc_store"]})
    result = sensor.evaluate_tick(context)
    return result, context.cursor


def _checked(result) -> set[tuple[str, str]]:
    """Checks the tick reported (runless evaluations) or asked a run for (the health check)."""
    reported = {(e.asset_key.path[-1], e.check_name) for e in result.asset_events}
    return reported | {(k.asset_key.path[-1], k.name) for req in result.run_requests for k in req.asset_check_keys}


def _evaluation(result, workflow: str, check: str):
    [found] = [e for e in result.asset_events if e.asset_key.path[-1] == workflow and e.check_name == check]
    return found


def test_checks_run_only_when_an_answer_changes(env, monkeypatch):
    with rig(WORKFLOWS, database_url=f"sqlite:///{env / 's.db'}", scenarios=SCENARIOS) as r:
        sim_environment(monkeypatch, r)
        defs = build_definitions(r.config)
        sensor = defs.resolve_sensor_def("amc_checks_sensor")
        with dg.instance_for_test() as instance:
            first, cursor = _tick(sensor, instance, r, None)
            # Nothing evaluated yet: every check once, the store's answers within the tick (no run),
            # the health check (it probes AMC) in one run.
            assert ("broken", "no_failed_executions") in _checked(first)
            assert len(first.asset_events) == 6 and _evaluation(first, "broken", "no_failed_executions").passed
            [health] = first.run_requests
            assert _checked(first) - {(e.asset_key.path[-1], e.check_name) for e in first.asset_events} == {
                ("execution_metrics", "amc_pipeline_healthy")}

            idle, cursor = _tick(sensor, instance, r, cursor)
            assert idle.run_requests == [] and idle.asset_events == []
            assert "no check would change" in idle.skip_message

            # AMC rejects the SQL: only broken's checks are re-evaluated, and they say why.
            r.request("broken", "2026-10-05")
            r.drive(lambda: r.status("broken", "2026-10-05") == "FAILED")
            failed, cursor = _tick(sensor, instance, r, cursor)
            assert failed.run_requests == []
            assert _checked(failed) == {("broken", "no_failed_executions"), ("broken", "no_stuck_executions")}
            evaluation = _evaluation(failed, "broken", "no_failed_executions")
            assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
            assert "Unable to compile" in evaluation.metadata["failed"].value
            # The checks job says the same when run on demand.
            job = defs.resolve_job_def("amc_execution_checks")
            subset = job.get_subset(asset_check_selection={dg.AssetCheckKey(dg.AssetKey(["amc", "broken"]),
                                                                            "no_failed_executions")})
            [on_demand] = subset.execute_in_process(instance=instance).get_asset_check_evaluations()
            assert on_demand.passed == evaluation.passed and on_demand.description == evaluation.description

            # A stuck threshold passing is a change too (the execution itself did not move).
            r.request("slowpoke", "2026-10-05")
            r.drive(lambda: r.status("slowpoke", "2026-10-05") == "PENDING")
            _, cursor = _tick(sensor, instance, r, cursor)
            slow = r.store.get_live("slowpoke", "2026-10-05").attempt
            r.store.update_attempt(slow.id, status_changed_at=datetime.now(UTC) - timedelta(minutes=5))
            stuck, cursor = _tick(sensor, instance, r, cursor)
            assert ("slowpoke", "no_stuck_executions") in _checked(stuck)
            assert not _evaluation(stuck, "slowpoke", "no_stuck_executions").passed
            assert not any(workflow == "good" for workflow, _ in _checked(stuck))

            # Re-queued after the failure and landed: broken's failed check changes back.
            r.sim.set_scenario("broken", Scenario(kind="succeed", rows=2))
            r.request("broken", "2026-10-05", force_new=True)
            r.drive(lambda: r.status("broken", "2026-10-05") == "SUCCESS")
            recovered, cursor = _tick(sensor, instance, r, cursor)
            assert _evaluation(recovered, "broken", "no_failed_executions").passed
