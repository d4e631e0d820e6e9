"""Packed backfills end to end: the simulator over HTTP, a real store, a real Dagster instance.

A backfill's runs queue their windows (`materialize`, as the backfill daemon's runs do), the monitor
packs them, the landing sensor asks for one partition-range run per pack, and that run lands every
window with its own materialization. Figures printed with -s feed the issue's note.
"""

import csv
import io
from collections import Counter
from datetime import date, timedelta

import dagster as dg
import pyarrow.parquet as pq
import pytest

from amc_pipeline.definitions import build_definitions
from amc_pipeline.defs.pack_landing import PACK_TAG
from amc_pipeline.partitions import partitions_def
from amc_pipeline.results.layout import partition_dir
from amc_pipeline.simulator import Scenario
from amc_pipeline_tests.harness import rig
from amc_pipeline_tests.reliability.common import materialize, resources

SQL = "SELECT date, campaign, SUM(impressions) AS impressions FROM t GROUP BY 1, 2"


def packed(name: str, max_windows: int = 31, split_column: str = "date") -> dict:
    return {"name": name, "sql": SQL,
            "packing": {"max_windows": max_windows, "split_column": split_column, "settle_seconds": 0}}


def keys(first: str, n: int) -> list[str]:
    start = date.fromisoformat(first)
    return [(start + timedelta(days=i)).isoformat() for i in range(n)]


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("AMC_PIPELINE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def landing_requests(defs, instance, r) -> list[dg.RunRequest]:
    sensor = defs.resolve_sensor_def("amc_landing_sensor")
    with dg.build_sensor_context(instance=instance, repository_def=defs.get_repository_def(),
                                 resources={"amc_store": resources(r)["amc_store"]}) as context:
        return list(sensor.evaluate_tick(context).run_requests or [])


def run(defs, instance, r, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """Execute a sensor's run request in process, as the daemon would launch it."""
    job = defs.resolve_job_def(request.job_name)
    return job.execute_in_process(instance=instance, tags=request.tags, partition_key=request.partition_key,
                                  resources=resources(r), raise_on_error=False)


def served(sim, amc_execution_id) -> list[dict]:
    rows = []
    for blob in sim.served_files(amc_execution_id):
        rows += list(csv.DictReader(io.StringIO(blob.decode("utf-8"), newline="")))
    return rows


def backfill(r, defs, instance, workflow: str, window_keys: list[str]) -> None:
    for key in window_keys:
        assert materialize(r, defs, workflow, key, instance).success


def all_status(r, workflow, window_keys, status) -> bool:
    return all(r.status(workflow, k) == status for k in window_keys)


def test_30_day_backfill_is_one_execution_and_30_partitions(env, tmp_path):
    window_keys = keys("2026-10-01", 30)
    scenarios = {"daily": Scenario(rows=600, files=3)}
    with rig([packed("daily")], database_url=f"sqlite:///{tmp_path / 's.db'}", scenarios=scenarios) as r:
        defs = build_definitions(r.config)
        with dg.instance_for_test() as instance:
            backfill(r, defs, instance, "daily", window_keys)
            r.drive(lambda: all_status(r, "daily", window_keys, "SUCCESS"))
            [execution] = r.sim.executions()  # exactly one AMC execution for 30 windows
            assert execution["timeWindowStartOriginal"] == "2026-10-01T00:00:00"
            assert execution["timeWindowEndOriginal"] == "2026-10-31T00:00:00"

            [request] = landing_requests(defs, instance, r)  # one landing run for the pack
            assert request.tags["dagster/asset_partition_range_start"] == window_keys[0]
            assert request.tags["dagster/asset_partition_range_end"] == window_keys[-1]
            result = run(defs, instance, r, request)
            assert result.success, result.all_events
            materializations = result.get_asset_materialization_events()
            assert sorted(m.partition for m in materializations) == window_keys

            rows = served(r.sim, execution["workflowExecutionId"])
            by_day = Counter(row["date"] for row in rows)
            total = 0
            for m in materializations:
                meta = m.materialization.metadata
                count = meta["dagster/row_count"].value
                assert count == by_day[m.partition] == pq.read_table(partition_dir(env, "daily", m.partition)).num_rows
                assert meta["amc/packed_execution"].value == execution["workflowExecutionId"]
                assert meta["amc/pack_range"].value == f"{window_keys[0]}..{window_keys[-1]}"
                total += count
            landed = pq.read_table(env / "results" / "daily", partitioning="hive")
            assert total == landed.num_rows == len(rows) == 600
            assert sorted(landed.column("campaign_id").to_pylist(), key=str) == sorted(
                (int(x["campaign_id"]) if x["campaign_id"] else None for x in rows), key=str)
            pdef = partitions_def(r.config.workflow("daily"))
            status = instance.get_status_by_partition(dg.AssetKey(["amc", "daily"]), window_keys, pdef)
            assert {v.value for v in status.values()} == {"MATERIALIZED"}
            assert landing_requests(defs, instance, r) == []  # landed: nothing more to ask for
            print(f"\npacked e2e: 30 windows, AMC executions used: {len(r.sim.executions())}, partitions landed: "
                  f"{len(materializations)}, rows landed {total} == rows of the execution {len(rows)}")


def test_45_windows_with_quota_2_is_two_executions(env, tmp_path):
    window_keys = keys("2026-10-01", 45)
    with rig([packed("daily")], database_url=f"sqlite:///{tmp_path / 's.db'}",
             instance={"daily_execution_quota": 2}, scenarios={"daily": Scenario(rows=90, files=1)}) as r:
        defs = build_definitions(r.config)
        with dg.instance_for_test() as instance:
            backfill(r, defs, instance, "daily", window_keys)
            r.drive(lambda: all_status(r, "daily", window_keys, "SUCCESS"))
            executions = r.sim.executions()
            assert len(executions) == 2
            spans = sorted((e["timeWindowStartOriginal"][:10], e["timeWindowEndOriginal"][:10]) for e in executions)
            assert spans == [("2026-10-01", "2026-11-01"), ("2026-11-01", "2026-11-15")]  # 31 + 14 windows
            requests = landing_requests(defs, instance, r)
            assert len(requests) == 2
            landed = [m.partition for q in requests
                      for m in run(defs, instance, r, q).get_asset_materialization_events()]
            assert sorted(landed) == window_keys
            print(f"\npacked e2e: 45 windows, quota 2/day, AMC executions used: {len(executions)}, "
                  f"partitions landed: {len(landed)}")


def test_a_failed_pack_fails_every_window_and_its_retry_is_one_execution(env, tmp_path):
    window_keys = keys("2026-10-01", 5)
    scenarios = {"daily": Scenario(kind="fail", failure_reason="Internal service error, please retry")}
    with rig([packed("daily")], database_url=f"sqlite:///{tmp_path / 's.db'}", scenarios=scenarios,
             monitor={"max_retries": 1}) as r:
        defs = build_definitions(r.config)
        with dg.instance_for_test() as instance:
            backfill(r, defs, instance, "daily", window_keys)
            r.drive(lambda: len(r.sim.executions()) == 1 and all(
                len(r.store.attempts_for(r.store.get_live("daily", k).id)) == 2 for k in window_keys))
            for key in window_keys:  # every window's first attempt failed with AMC's reason; all retried
                first, retry = r.store.attempts_for(r.store.get_live("daily", key).id)
                assert first.status == "FAILED" and first.failure_reason == "Internal service error, please retry"
                assert first.error_type == "AMC_API" and retry.status in ("QUEUED", "PENDING", "RUNNING", "FAILED")

            # The retry is one execution for the same five windows; it fails too, now for good.
            r.drive(lambda: all_status(r, "daily", window_keys, "FAILED"))
            assert len(r.sim.executions()) == 2
            reports = [q for q in landing_requests(defs, instance, r) if q.run_key.startswith("failed:")]
            assert sorted(q.partition_key for q in reports) == window_keys
            for q in reports:
                failed = run(defs, instance, r, q)
                assert not failed.success
                [failure] = failed.get_step_failure_events()
                assert "Internal service error" in failure.step_failure_data.error.to_string()
            pdef = partitions_def(r.config.workflow("daily"))
            status = instance.get_status_by_partition(dg.AssetKey(["amc", "daily"]), window_keys, pdef)
            assert {v.value for v in status.values()} == {"FAILED"}

            # Materializing the windows again queues them; they are packed again and land.
            r.sim.set_scenario("daily", Scenario(rows=50, files=1))
            backfill(r, defs, instance, "daily", window_keys)
            r.drive(lambda: all_status(r, "daily", window_keys, "SUCCESS"))
            assert len(r.sim.executions()) == 3
            [request] = landing_requests(defs, instance, r)
            assert request.tags[PACK_TAG]
            assert sorted(m.partition for m in run(defs, instance, r, request).get_asset_materialization_events()) \
                == window_keys
            status = instance.get_status_by_partition(dg.AssetKey(["amc", "daily"]), window_keys, pdef)
            assert {v.value for v in status.values()} == {"MATERIALIZED"}


def test_an_empty_window_of_a_pack_lands_and_has_rows_warns(env, tmp_path):
    window_keys = keys("2026-10-01", 4)
    with rig([packed("daily")], database_url=f"sqlite:///{tmp_path / 's.db'}",
             scenarios={"daily": Scenario(rows=2, files=1)}) as r:  # rows on the first two days only
        defs = build_definitions(r.config)
        with dg.instance_for_test() as instance:
            backfill(r, defs, instance, "daily", window_keys)
            r.drive(lambda: all_status(r, "daily", window_keys, "SUCCESS"))
            [request] = landing_requests(defs, instance, r)
            result = run(defs, instance, r, request)
            assert result.success
            rows = {m.partition: m.materialization.metadata["dagster/row_count"].value
                    for m in result.get_asset_materialization_events()}
            assert rows == {"2026-10-01": 1, "2026-10-02": 1, "2026-10-03": 0, "2026-10-04": 0}
            checks = {(e.partition, e.check_name): e for e in result.get_asset_check_evaluations()}
            assert not checks[("2026-10-04", "has_rows")].passed
            assert checks[("2026-10-04", "has_rows")].severity == dg.AssetCheckSeverity.WARN
            assert checks[("2026-10-01", "has_rows")].passed
            assert all(checks[(k, "schema_matches_previous")].passed for k in window_keys)


def test_a_pack_landing_that_fails_marks_its_partitions_failed_and_is_asked_again(env, tmp_path):
    window_keys = keys("2026-10-01", 3)
    columns = [{"name": "campaign", "dataType": "STRING"}, {"name": "impressions", "dataType": "LONG"}]
    with rig([packed("daily")], database_url=f"sqlite:///{tmp_path / 's.db'}",
             scenarios={"daily": Scenario(rows=6, columns=columns)}) as r:  # no `date` column in the result
        defs = build_definitions(r.config)
        with dg.instance_for_test() as instance:
            backfill(r, defs, instance, "daily", window_keys)
            r.drive(lambda: all_status(r, "daily", window_keys, "SUCCESS"))
            [request] = landing_requests(defs, instance, r)
            leader = request.tags[PACK_TAG]
            assert request.run_key == f"land-pack:{leader}:1"
            result = run(defs, instance, r, request)
            assert not result.success
            [failure] = result.get_step_failure_events()
            error = failure.step_failure_data.error.to_string()
            assert "packing.split_column 'date': not among the outputColumns" in error
            pdef = partitions_def(r.config.workflow("daily"))
            status = instance.get_status_by_partition(dg.AssetKey(["amc", "daily"]), window_keys, pdef)
            assert {v.value for v in status.values()} == {"FAILED"}  # the range run failed for every window
            r.drive(lambda: landing_requests(defs, instance, r) != [], pause=0.1)  # after the landing backoff
            [again] = landing_requests(defs, instance, r)
            assert again.run_key == f"land-pack:{leader}:2"
