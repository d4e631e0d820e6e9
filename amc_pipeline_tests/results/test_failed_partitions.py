"""A window AMC failed for good shows as a Failed partition, with AMC's reason, until it lands again."""

import dagster as dg
import pytest

from amc_pipeline.definitions import build_definitions
from amc_pipeline.partitions import partitions_def
from amc_pipeline.simulator import Scenario
from amc_pipeline_tests.harness import rig
from amc_pipeline_tests.results.test_assets import resources, sim_environment

BROKEN = {"name": "broken", "sql": "SELECT x FROM nowhere"}
KEY = "2026-10-05"


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("AMC_PIPELINE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def _run_requests(defs, instance, r, cursor):
    sensor = defs.resolve_sensor_def("amc_landing_sensor")
    context = dg.build_sensor_context(instance=instance, cursor=cursor, repository_def=defs.get_repository_def(),
                                      resources={"amc_store": resources(r)["amc_store"]})
    result = sensor.evaluate_tick(context)
    return result.run_requests, context.cursor


def _status(instance, r, defs) -> str | None:
    pdef = partitions_def(r.config.workflow("broken"))
    status = instance.get_status_by_partition(dg.AssetKey(["amc", "broken"]), [KEY], pdef)
    return status[KEY].value if status and status.get(KEY) else None


def test_failed_window_is_a_failed_partition_until_it_lands(env, monkeypatch):
    scenarios = {"broken": Scenario(kind="sql_error")}
    with rig([BROKEN], database_url=f"sqlite:///{env / 's.db'}", scenarios=scenarios) as r:
        sim_environment(monkeypatch, r)
        defs = build_definitions(r.config)
        job = defs.resolve_job_def("amc_broken_job")
        with dg.instance_for_test() as instance:
            assert job.execute_in_process(instance=instance, partition_key=KEY).success  # queues the window
            r.drive(lambda: r.status("broken", KEY) == "FAILED")

            requests, cursor = _run_requests(defs, instance, r, None)
            [report] = requests
            assert report.run_key.startswith("failed:") and report.partition_key == KEY
            result = job.execute_in_process(instance=instance, partition_key=KEY, tags=report.tags,
                                            raise_on_error=False)
            assert not result.success
            [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
            assert "Unable to compile" in failure.step_failure_data.error.message
            assert r.status("broken", KEY) == "FAILED"  # a report never re-queues
            assert _status(instance, r, defs) == "FAILED"
            assert _run_requests(defs, instance, r, cursor)[0] == []  # reported once

            # Materializing again re-queues it; once AMC runs it and it lands, the partition is green.
            r.sim.set_scenario("broken", Scenario(kind="succeed", rows=2))
            assert job.execute_in_process(instance=instance, partition_key=KEY).success
            assert r.status("broken", KEY) == "QUEUED"
            r.drive(lambda: r.status("broken", KEY) == "SUCCESS")
            landed = job.execute_in_process(instance=instance, partition_key=KEY)
            assert landed.success and len(landed.get_asset_materialization_events()) == 1
            assert _status(instance, r, defs) == "MATERIALIZED"
