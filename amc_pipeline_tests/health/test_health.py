"""Stuck and failed checks, metrics, health, the cancel job, and the `status`/`doctor` commands."""

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from amc_pipeline.definitions import build_definitions
from amc_pipeline.health.metrics import compute_metrics
from amc_pipeline.health.status import amc_probe_for, monitor_health
from amc_pipeline.simulator import Fault, Scenario
from amc_pipeline_tests.constants import CLIENT_SECRET, CREDENTIALS, INSTANCE_ID
from amc_pipeline_tests.harness import rig
from amc_pipeline_tests.results.test_assets import resources, sim_environment

WORKFLOWS = [
    {"name": "good", "sql": "SELECT 1"},
    {"name": "broken", "sql": "SELECT x FROM nowhere"},
    {"name": "slowpoke", "sql": "SELECT 2", "stuck_pending_minutes": 1},
]
SCENARIOS = {"broken": Scenario(kind="sql_error"), "slowpoke": Scenario(kind="stuck_pending"),
             "good": Scenario(kind="succeed", rows=7)}


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("AMC_PIPELINE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def test_execution_checks_metrics_and_health(env, monkeypatch):
    with rig(WORKFLOWS, database_url=f"sqlite:///{env / 's.db'}", scenarios=SCENARIOS) as r:
        sim_environment(monkeypatch, r)
        defs = build_definitions(r.config)
        for name in ("good", "broken", "slowpoke"):
            r.request(name, "2026-10-05")
        r.drive(lambda: r.status("good", "2026-10-05") == "SUCCESS" and r.status("broken", "2026-10-05") == "FAILED")
        # Pretend the slow one has been PENDING for 10 minutes (limit 1 minute).
        slow = r.store.get_live("slowpoke", "2026-10-05").attempt
        r.store.update_attempt(slow.id, status_changed_at=datetime.now(UTC) - timedelta(minutes=10))
        with dg.instance_for_test() as instance:
            result = defs.resolve_job_def("amc_execution_checks").execute_in_process(instance=instance)
        evaluations = {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}
        stuck = evaluations[("slowpoke", "no_stuck_executions")]
        assert not stuck.passed and stuck.severity == dg.AssetCheckSeverity.WARN
        assert "2026-10-05" in stuck.metadata["stuck"].value and slow.amc_execution_id in stuck.metadata["stuck"].value
        failed = evaluations[("broken", "no_failed_executions")]
        assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
        assert "QUERY" in failed.metadata["failed"].value and "Unable to compile" in failed.metadata["failed"].value
        assert evaluations[("good", "no_failed_executions")].passed
        assert evaluations[("good", "no_stuck_executions")].passed
        assert evaluations[("execution_metrics", "amc_pipeline_healthy")].passed

        metrics = compute_metrics(r.store, ["good", "broken", "slowpoke"], datetime.now(UTC))
        assert metrics["overall"]["executions"] == 3
        assert metrics["overall"]["status_success"] == 1 and metrics["overall"]["status_failed"] == 1
        assert metrics["broken"]["errors_query"] == 1 and metrics["broken"]["error_rate"] == 1.0
        assert metrics["good"]["run_p50_seconds"] >= 0
        with dg.instance_for_test() as instance:
            mat = dg.materialize([defs.get_assets_def(dg.AssetKey(["amc", "execution_metrics"])),
                                  defs.get_assets_def(dg.AssetKey(["amc", "execution_overview"]))],
                                 instance=instance, resources=resources(r))
        metas = {e.asset_key.path[-1]: e.materialization.metadata for e in mat.get_asset_materialization_events()}
        assert metas["execution_metrics"]["overall/status_failed"].value == 1
        history = metas["execution_overview"]["history"].value
        assert "✅" in history and "❌" in history


def test_health_goes_red_when_amc_is_down_and_back(env, monkeypatch):
    with rig([WORKFLOWS[0]], database_url=f"sqlite:///{env / 's.db'}",
             scenarios={"good": Scenario(kind="stuck_running")}) as r:
        sim_environment(monkeypatch, r)
        from amc_pipeline.defs.resources import AmcResource

        amc = AmcResource(api_url=r.sim.url, token_url=r.sim.token_url, retry_budget_seconds=1, **CREDENTIALS)
        probe = amc_probe_for(amc.get_client, r.config)
        r.request("good", "2026-10-05")
        r.monitor_pass()
        assert monitor_health(r.store, r.config, amc_probe=probe).healthy
        r.sim.add_fault(Fault(kind="error500", endpoint="*"))
        later = datetime.now(UTC) + timedelta(minutes=10)
        health = monitor_health(r.store, r.config, amc_probe=probe, now=later)
        assert not health.healthy
        assert any("poller stale" in p for p in health.problems)
        assert any("AMC unreachable" in p for p in health.problems)
        r.sim.clear_faults()
        r.monitor_pass(now=later)
        assert monitor_health(r.store, r.config, amc_probe=probe, now=later).healthy


def test_cancel_job_cancels_at_amc_and_in_store(env, monkeypatch):
    with rig([WORKFLOWS[0]], database_url=f"sqlite:///{env / 's.db'}",
             scenarios={"good": Scenario(kind="stuck_running")}) as r:
        sim_environment(monkeypatch, r)
        defs = build_definitions(r.config)
        for day in ("2026-10-05", "2026-10-06"):
            r.request("good", day)
        r.drive(lambda: r.status("good", "2026-10-05") == "RUNNING" and r.status("good", "2026-10-06") == "RUNNING")
        job = defs.resolve_job_def("cancel_amc_executions")
        with dg.instance_for_test() as instance:
            result = job.execute_in_process(instance=instance, run_config={"ops": {"cancel_executions": {"config": {
                "workflow": "good", "partition_keys": ["2026-10-05"]}}}})
            assert result.success
            bad = job.execute_in_process(instance=instance, raise_on_error=False, run_config={"ops": {
                "cancel_executions": {"config": {"workflow": "nope", "partition_keys": ["2026-10-05"]}}}})
            assert not bad.success
        assert r.status("good", "2026-10-05") == "CANCELLED"
        assert r.status("good", "2026-10-06") == "RUNNING"
        amc = {e["workflowExecutionId"]: e["status"] for e in r.sim.executions()}
        assert amc[r.store.get_live("good", "2026-10-05").attempt.amc_execution_id] == "CANCELLED"


def test_status_and_doctor_commands(env, monkeypatch, tmp_path):
    with rig(WORKFLOWS, database_url=f"sqlite:///{env / 's.db'}", scenarios=SCENARIOS) as r:
        sim_environment(monkeypatch, r)
        for name in ("good", "broken"):
            r.request(name, "2026-10-05")
        r.drive(lambda: r.status("good", "2026-10-05") == "SUCCESS" and r.status("broken", "2026-10-05") == "FAILED")
        cfg = tmp_path / "pipeline.yaml"
        import yaml

        cfg.write_text(yaml.safe_dump(r.config.model_dump(mode="json")))
        env_vars = {**os.environ, "AMC_PIPELINE_CONFIG": str(cfg)}
        cli = [sys.executable, "-m", "amc_pipeline.cli"]
        status = subprocess.run([*cli, "status"], capture_output=True, text=True, env=env_vars, timeout=120)
        assert status.returncode == 0, status.stderr
        assert "✅" in status.stdout and "❌" in status.stdout and "Unable to compile" in status.stdout
        only = subprocess.run([*cli, "status", "--status", "failed"], capture_output=True, text=True,
                              env=env_vars, timeout=120)
        assert "broken" in only.stdout and "good" not in only.stdout
        doctor = subprocess.run([*cli, "doctor"], capture_output=True, text=True, env=env_vars, timeout=120)
        assert doctor.returncode == 1  # a failed window makes it unhealthy
        assert "ok    account default: token refreshed" in doctor.stdout
        assert f"ok    instance {INSTANCE_ID}: executions listed" in doctor.stdout
        assert "FAIL  workflow broken: 0 stuck, 1 failed" in doctor.stdout
        assert CLIENT_SECRET not in doctor.stdout + doctor.stderr
        offline = subprocess.run([*cli, "doctor"], capture_output=True, text=True, timeout=120,
                                 env={**env_vars, "AMC_API_URL": "http://127.0.0.1:9"})
        # The token endpoint answers, the API does not: the account is fine, its instance is not.
        assert offline.returncode == 1 and "ok    account default: token refreshed" in offline.stdout
        assert f"FAIL  instance {INSTANCE_ID}: NETWORK" in offline.stdout, offline.stdout


def test_landing_given_up_is_a_failed_window_and_leaves_the_sensor_queue(env):
    from amc_pipeline.health.status import failed_executions

    with rig([WORKFLOWS[0]], database_url=f"sqlite:///{env / 's.db'}", monitor={"max_landing_attempts": 2}) as r:
        r.request("good", "2026-10-05")
        r.request("good", "2026-10-06")
        r.drive(lambda: r.status("good", "2026-10-05") == "SUCCESS" and r.status("good", "2026-10-06") == "SUCCESS")
        broken = r.store.get_live("good", "2026-10-05")
        for _ in range(2):
            r.store.begin_landing(broken.id)
            r.store.record_land_failure(broken.id, error="ResultConversionError: file 0, line 3: ragged row",
                                        next_land_at=datetime.now(UTC) - timedelta(seconds=1))
        landable = r.store.landable(datetime.now(UTC), max_land_attempts=2)
        assert [e.partition_key for e in landable] == ["2026-10-06"]
        failed = failed_executions(r.store, r.config.workflow("good"), max_landing_attempts=2)
        assert [(f.partition_key, f.status, f.error_type) for f in failed] == [("2026-10-05", "LANDING_FAILED",
                                                                              "LANDING")]
        assert "ragged row" in failed[0].reason
