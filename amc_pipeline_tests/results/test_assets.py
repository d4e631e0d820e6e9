"""Workflow assets, the landing sensor and the downstream roll-up, with Dagster and the simulator."""

import csv
import io

import dagster as dg
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from amc_pipeline.definitions import build_definitions
from amc_pipeline.defs.resources import AmcResource, StoreResource
from amc_pipeline.simulator import Scenario
from amc_pipeline_tests.constants import INSTANCE_ID
from amc_pipeline_tests.harness import rig

CAMPAIGN = {"name": "campaign_performance", "sql": "SELECT campaign, SUM(impressions) FROM t GROUP BY 1"}


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("AMC_PIPELINE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def resources(r):
    cfg = r.sim.config
    return {
        "amc": AmcResource(api_url=r.sim.url, token_url=r.sim.token_url, client_id=cfg.client_id,
                           client_secret=cfg.client_secret, refresh_token=cfg.refresh_token,
                           retry_budget_seconds=5),
        "amc_store": StoreResource(database_url=str(r.store.engine.url.render_as_string(hide_password=False))),
    }


def materialize(r, defs, workflow, partition_key, instance, run_config=None):
    asset = defs.get_assets_def(dg.AssetKey(["amc", workflow]))
    return dg.materialize([asset], partition_key=partition_key, resources=resources(r), instance=instance,
                          run_config=run_config, raise_on_error=False)


def served_rows(sim, amc_execution_id) -> list[dict]:
    rows = []
    for blob in sim.served_files(amc_execution_id):
        rows += list(csv.DictReader(io.StringIO(blob.decode("utf-8"), newline="")))
    return rows


def test_materialize_enqueues_then_lands(env, tmp_path):
    with rig([CAMPAIGN], database_url=f"sqlite:///{tmp_path / 's.db'}") as r:
        defs = build_definitions(r.config)
        with dg.instance_for_test() as instance:
            first = materialize(r, defs, "campaign_performance", "2026-10-05", instance)
            assert first.success
            assert first.get_asset_materialization_events() == []
            assert r.status("campaign_performance", "2026-10-05") == "QUEUED"
            again = materialize(r, defs, "campaign_performance", "2026-10-05", instance)
            assert again.success and r.store.list_executions() and len(r.store.list_executions()) == 1

            r.drive(lambda: r.status("campaign_performance", "2026-10-05") == "SUCCESS")
            landed = materialize(r, defs, "campaign_performance", "2026-10-05", instance)
            assert landed.success
            [event] = landed.get_asset_materialization_events()
            meta = event.materialization.metadata
            execution = r.store.get_live("campaign_performance", "2026-10-05")
            expected = served_rows(r.sim, execution.attempt.amc_execution_id)
            assert meta["dagster/row_count"].value == len(expected) == execution.rows
            assert meta["amc/execution_id"].value == execution.attempt.amc_execution_id
            assert meta["amc/attempt"].value == 1
            assert meta["amc/files"].value >= 1
            assert meta["dagster/size_bytes"].value > 0
            schema = meta["dagster/column_schema"].value
            assert [c.name for c in schema.columns] == list(expected[0].keys())
            assert len(meta["preview"].value.records) == min(20, len(expected))
            checks = {c.check_name: c.passed for c in landed.get_asset_check_evaluations()}
            assert checks == {"schema_matches_previous": True, "has_rows": True}

            folder = env / "results" / "campaign_performance" / "window_start=2026-10-05"
            table = ds.dataset(env / "results" / "campaign_performance", format="parquet",
                               partitioning="hive").to_table()
            assert table.num_rows == len(expected)
            assert sorted(p.name for p in folder.iterdir())[0] == "part-0000.parquet"
            # Materializing again does not download again unless asked to.
            downloads = r.sim.stats().get("download", 0)
            same = materialize(r, defs, "campaign_performance", "2026-10-05", instance)
            assert same.get_asset_materialization_events() == [] and r.sim.stats().get("download", 0) == downloads
            redo = materialize(r, defs, "campaign_performance", "2026-10-05", instance,
                               run_config={"ops": {"amc__campaign_performance": {"config": {"redownload": True}}}})
            assert len(redo.get_asset_materialization_events()) == 1


def test_schema_drift_fails_blocking_check(env, tmp_path):
    narrow = [{"name": "campaign", "dataType": "STRING"}, {"name": "impressions", "dataType": "LONG"}]
    wide = [{"name": "campaign", "dataType": "STRING"}, {"name": "impressions", "dataType": "DOUBLE"},
            {"name": "clicks", "dataType": "LONG"}]
    scenarios = {"campaign_performance": Scenario(kind="succeed", rows=5, columns=narrow)}
    with rig([CAMPAIGN], database_url=f"sqlite:///{tmp_path / 's.db'}", scenarios=scenarios) as r:
        defs = build_definitions(r.config)
        with dg.instance_for_test() as instance:
            r.request("campaign_performance", "2026-10-05")
            r.drive(lambda: r.status("campaign_performance", "2026-10-05") == "SUCCESS")
            assert materialize(r, defs, "campaign_performance", "2026-10-05", instance).success
            r.sim.set_scenario("campaign_performance", Scenario(kind="succeed", rows=0, columns=wide))
            r.request("campaign_performance", "2026-10-06")
            r.drive(lambda: r.status("campaign_performance", "2026-10-06") == "SUCCESS")
            result = materialize(r, defs, "campaign_performance", "2026-10-06", instance)
            checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
            assert not checks["schema_matches_previous"].passed
            meta = checks["schema_matches_previous"].metadata
            assert meta["columns_added"].value == "clicks"
            assert "impressions: int64 → double" in meta["columns_retyped"].value
            assert not checks["has_rows"].passed  # empty window: WARN
            assert checks["has_rows"].severity == dg.AssetCheckSeverity.WARN


def sim_environment(monkeypatch, r) -> None:
    """Point Definitions' own resources (EnvVar-based) at the simulator and the test store."""
    cfg = r.sim.config
    for name, value in {"AMC_API_URL": r.sim.url, "AMC_TOKEN_URL": r.sim.token_url,
                        "AMC_CLIENT_ID": cfg.client_id, "AMC_CLIENT_SECRET": cfg.client_secret,
                        "AMC_REFRESH_TOKEN": cfg.refresh_token,
                        "AMC_PIPELINE_DATABASE_URL": r.store.engine.url.render_as_string(hide_password=False)}.items():
        monkeypatch.setenv(name, value)


def test_monitor_sensor_and_landing_sensor(env, tmp_path, monkeypatch):
    with rig([CAMPAIGN], database_url=f"sqlite:///{tmp_path / 's.db'}") as r:
        sim_environment(monkeypatch, r)
        defs = build_definitions(r.config)
        repo = defs.get_repository_def()
        monitor_sensor = repo.get_sensor_def("amc_monitor_sensor")
        landing_sensor = repo.get_sensor_def("amc_landing_sensor")
        res = resources(r)
        with dg.instance_for_test() as instance:
            with dg.build_sensor_context(instance=instance, resources=res, repository_def=repo) as ctx:
                result = monitor_sensor(ctx)
                assert isinstance(result, dg.SkipReason) and "no AMC work due" in result.skip_message
            r.request("campaign_performance", "2026-10-05")
            with dg.build_sensor_context(instance=instance, resources=res, repository_def=repo) as ctx:
                result = monitor_sensor(ctx)
                assert isinstance(result, dg.RunRequest) and result.run_key.startswith("monitor:")
            # A monitor run in flight: skip.
            job = repo.get_job("amc_monitor")
            run = instance.create_run_for_job(job, status=dg.DagsterRunStatus.STARTED)
            with dg.build_sensor_context(instance=instance, resources=res, repository_def=repo) as ctx:
                result = monitor_sensor(ctx)
                assert isinstance(result, dg.SkipReason) and run.run_id in result.skip_message
            # The monitor job itself, through Dagster, emits one observation per status change.
            instance.report_run_failed(run)
            outcome = job.execute_in_process(instance=instance)
            observations = [e for e in outcome.all_events if e.event_type_value == "ASSET_OBSERVATION"]
            assert 1 <= len(observations) <= 2  # QUEUED→PENDING, and →RUNNING if AMC already moved on
            obs = [o.event_specific_data.asset_observation for o in observations]
            assert {o.asset_key for o in obs} == {dg.AssetKey(["amc", "campaign_performance"])}
            assert {o.partition for o in obs} == {"2026-10-05"}
            assert obs[0].metadata["status"].value == "PENDING"
            assert obs[0].metadata["previous_status"].value == "QUEUED"

            with dg.build_sensor_context(instance=instance, resources=res, repository_def=repo) as ctx:
                assert isinstance(landing_sensor(ctx), dg.SkipReason)
            r.drive(lambda: r.status("campaign_performance", "2026-10-05") == "SUCCESS")
            execution = r.store.get_live("campaign_performance", "2026-10-05")
            with dg.build_sensor_context(instance=instance, resources=res, repository_def=repo) as ctx:
                requests = landing_sensor(ctx)
            assert [q.run_key for q in requests] == [f"land:{execution.id}:1"]
            assert requests[0].partition_key == "2026-10-05"
            assert requests[0].tags["amc/instance"] == INSTANCE_ID


def test_downstream_rollup_reads_landed_partitions(env, tmp_path):
    scenarios = {"campaign_performance": Scenario(kind="succeed", rows=4, columns=[
        {"name": "campaign", "dataType": "STRING"}, {"name": "impressions", "dataType": "LONG"},
        {"name": "clicks", "dataType": "LONG"}, {"name": "spend", "dataType": "DOUBLE"}])}
    with rig([CAMPAIGN], database_url=f"sqlite:///{tmp_path / 's.db'}", scenarios=scenarios) as r:
        defs = build_definitions(r.config)
        with dg.instance_for_test() as instance:
            for day in ("2026-10-05", "2026-10-06"):
                r.request("campaign_performance", day)
            r.drive(lambda: all(r.status("campaign_performance", d) == "SUCCESS"
                                for d in ("2026-10-05", "2026-10-06")))
            for day in ("2026-10-05", "2026-10-06"):
                assert materialize(r, defs, "campaign_performance", day, instance).success
            rollup = defs.get_assets_def(dg.AssetKey(["amc_rollups", "campaign_performance_weekly"]))
            result = dg.materialize([rollup], instance=instance)
            assert result.success
            table = pq.read_table(env / "rollups" / "campaign_performance_weekly.parquet")
            landed = ds.dataset(env / "results" / "campaign_performance", format="parquet",
                                partitioning="hive").to_table()
            assert sum(table["impressions"].to_pylist()) == sum(v or 0 for v in landed["impressions"].to_pylist())
            assert set(table["days"].to_pylist()) == {2}


def test_failed_landing_is_retried_by_the_sensor_with_a_new_run_key(env, tmp_path, monkeypatch):
    from amc_pipeline.simulator import Fault

    with rig([CAMPAIGN], database_url=f"sqlite:///{tmp_path / 's.db'}",
             monitor={"landing_retry_seconds": 0.01}) as r:
        sim_environment(monkeypatch, r)
        defs = build_definitions(r.config)
        landing_sensor = defs.get_repository_def().get_sensor_def("amc_landing_sensor")
        r.request("campaign_performance", "2026-10-05")
        r.drive(lambda: r.status("campaign_performance", "2026-10-05") == "SUCCESS")
        execution = r.store.get_live("campaign_performance", "2026-10-05")
        with dg.instance_for_test() as instance:
            def keys():
                with dg.build_sensor_context(instance=instance, resources=resources(r)) as ctx:
                    result = landing_sensor(ctx)
                return [] if isinstance(result, dg.SkipReason) else [q.run_key for q in result]

            assert keys() == [f"land:{execution.id}:1"]
            r.sim.add_fault(Fault(kind="truncate_download", endpoint="download"))  # every download cut short
            failed = materialize(r, defs, "campaign_performance", "2026-10-05", instance)
            assert not failed.success
            assert r.store.get(execution.id).land_error
            r.sim.clear_faults()
            import time

            time.sleep(0.05)
            assert keys() == [f"land:{execution.id}:2"]
            assert materialize(r, defs, "campaign_performance", "2026-10-05", instance).success
            assert keys() == []
            landed = r.store.get(execution.id)
            assert landed.landed_at is not None and landed.land_error is None


def test_landing_run_that_died_before_landing_gets_a_new_key(env, tmp_path, monkeypatch):
    with rig([CAMPAIGN], database_url=f"sqlite:///{tmp_path / 's.db'}",
             monitor={"landing_retry_seconds": 0.01}) as r:
        sim_environment(monkeypatch, r)
        defs = build_definitions(r.config)
        repo = defs.get_repository_def()
        landing_sensor = repo.get_sensor_def("amc_landing_sensor")
        r.request("campaign_performance", "2026-10-05")
        r.drive(lambda: r.status("campaign_performance", "2026-10-05") == "SUCCESS")
        execution = r.store.get_live("campaign_performance", "2026-10-05")
        with dg.instance_for_test() as instance:
            def tick():
                with dg.build_sensor_context(instance=instance, resources=resources(r)) as ctx:
                    return landing_sensor(ctx)

            [request] = tick()
            assert request.run_key == f"land:{execution.id}:1"
            # The run for that key failed before the asset body ran (e.g. the code location did not load).
            instance.create_run_for_job(repo.get_job("amc_monitor"), status=dg.DagsterRunStatus.FAILURE,
                                        tags={"dagster/run_key": request.run_key})
            assert isinstance(tick(), dg.SkipReason)
            assert r.store.get(execution.id).land_attempts == 1
            import time

            time.sleep(0.05)
            [retry] = tick()
            assert retry.run_key == f"land:{execution.id}:2"
