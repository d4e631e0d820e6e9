"""`storage.table_format: iceberg` through Dagster: each landing is one snapshot of `amc.<workflow>`
that replaces exactly its window, with `dagster/table_name` and the snapshot id as metadata; the
catalog lives in the store's database; the roll-up reads the table. Local and S3 (moto) warehouses."""

import csv
import io
import uuid

import dagster as dg
import pyarrow.compute as pc
import pytest

from amc_pipeline.config import parse_config
from amc_pipeline.definitions import build_definitions
from amc_pipeline.downstream import read_table
from amc_pipeline.results.storage import iceberg_settings
from amc_pipeline_tests.harness import pipeline_config, rig
from amc_pipeline_tests.results.test_assets import CAMPAIGN, materialize
from amc_pipeline_tests.s3 import aws_env, s3_server

DAYS = ("2026-10-05", "2026-10-06")


def _with_iceberg(config, results_uri: str | None):
    data = config.model_dump(mode="json")
    data["storage"] = {"table_format": "iceberg", **({"results_uri": results_uri} if results_uri else {})}
    return parse_config(data)


def _served(sim, amc_execution_id) -> int:
    files = sim.served_files(amc_execution_id)
    return sum(len(list(csv.DictReader(io.StringIO(b.decode(), newline="")))) for b in files)


def _land_twice_and_check(r, defs, instance, database_url):
    snapshots = []
    for key in DAYS:
        assert materialize(r, defs, "campaign_performance", key, instance).success
        r.drive(lambda key=key: r.status("campaign_performance", key) == "SUCCESS")
        landed = materialize(r, defs, "campaign_performance", key, instance)
        assert landed.success
        [event] = landed.get_asset_materialization_events()
        meta = event.materialization.metadata
        assert meta["dagster/table_name"].value == "amc.campaign_performance"
        snapshots.append(int(meta["amc/snapshot_id"].value))
        checks = {c.check_name: c.passed for c in landed.get_asset_check_evaluations()}
        assert checks == {"schema_matches_previous": True, "has_rows": True}
    assert len(set(snapshots)) == 2

    settings = iceberg_settings(r.config.storage, database_url)
    table = read_table(settings, "campaign_performance")
    for key in DAYS:
        execution = r.store.get_live("campaign_performance", key)
        rows = table.filter(pc.equal(table["window_start"], key)).num_rows
        assert rows == execution.rows == _served(r.sim, execution.attempt.amc_execution_id)

    # Re-landing one window replaces exactly its rows, in one new snapshot.
    again = materialize(r, defs, "campaign_performance", DAYS[0], instance, run_config={
        "ops": {"amc__campaign_performance": {"config": {"redownload": True}}}})
    assert again.success
    [event] = again.get_asset_materialization_events()
    assert int(event.materialization.metadata["amc/snapshot_id"].value) not in snapshots
    after = read_table(settings, "campaign_performance")
    for key in DAYS:
        assert (after.filter(pc.equal(after["window_start"], key)).num_rows
                == table.filter(pc.equal(table["window_start"], key)).num_rows)
    rollup = dg.materialize([defs.get_assets_def(dg.AssetKey(["amc_rollups", "campaign_performance_weekly"]))],
                            instance=instance)
    assert rollup.success
    [event] = rollup.get_asset_materialization_events()
    assert event.materialization.metadata["source_rows"].value == after.num_rows


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("AMC_PIPELINE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def test_iceberg_on_local_warehouse(env, monkeypatch):
    database_url = f"sqlite:///{env / 's.db'}"
    monkeypatch.setenv("AMC_PIPELINE_DATABASE_URL", database_url)
    with rig([CAMPAIGN], database_url=database_url) as r:
        r.config = _with_iceberg(pipeline_config([CAMPAIGN]), None)
        defs = build_definitions(r.config)
        with dg.instance_for_test() as instance:
            _land_twice_and_check(r, defs, instance, database_url)


def test_iceberg_on_s3_warehouse(env, monkeypatch):
    bucket = f"amc-ice-{uuid.uuid4().hex[:8]}"
    database_url = f"sqlite:///{env / 's.db'}"
    monkeypatch.setenv("AMC_PIPELINE_DATABASE_URL", database_url)
    with s3_server() as s3, rig([CAMPAIGN], database_url=database_url) as r:
        s3.client.create_bucket(Bucket=bucket)
        for name, value in aws_env(s3.endpoint_url).items():
            monkeypatch.setenv(name, value)
        r.config = _with_iceberg(pipeline_config([CAMPAIGN]), f"s3://{bucket}/lake")
        defs = build_definitions(r.config)
        with dg.instance_for_test() as instance:
            _land_twice_and_check(r, defs, instance, database_url)
        keys = [o["Key"] for o in s3.client.list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert any(k.startswith("lake/amc.db/campaign_performance/data/") or "/data/" in k for k in keys), keys
