"""The workflow asset and the roll-up with AMC_PIPELINE_RESULTS_URI=s3://… (moto's S3 server), through
Dagster: `dagster/uri` is the object URI, schema drift reads the previous window from S3, and the AWS
secret key appears nowhere in the run's event log, the run record, the execution store or metadata."""

import uuid

import dagster as dg
import pyarrow.parquet as pq
import sqlalchemy as sa
from dagster._serdes import serialize_value

from amc_pipeline.definitions import build_definitions
from amc_pipeline.results.storage import resolve_results_root
from amc_pipeline_tests.harness import rig
from amc_pipeline_tests.results.test_assets import CAMPAIGN, materialize
from amc_pipeline_tests.s3 import FAKE_SECRET_ACCESS_KEY, aws_env, s3_server

#: moto keeps one S3 backend per process (every s3_server() shares it): a bucket of our own.
BUCKET = f"amc-lake-{uuid.uuid4().hex[:8]}"
ROOT_URI = f"s3://{BUCKET}/lake"


def store_text(store) -> str:
    """Every row of every table of the execution store, as text."""
    metadata = sa.MetaData()
    metadata.reflect(bind=store.engine)
    with store.engine.connect() as conn:
        return "\n".join(repr(row) for table in metadata.tables.values() for row in conn.execute(sa.select(table)))


def test_materialize_lands_on_s3_and_keeps_the_secret_out(tmp_path, monkeypatch):
    monkeypatch.setenv("AMC_PIPELINE_DATA_DIR", str(tmp_path / "data"))
    with s3_server() as s3, rig([CAMPAIGN], database_url=f"sqlite:///{tmp_path / 's.db'}") as r:
        s3.client.create_bucket(Bucket=BUCKET)
        for name, value in aws_env(s3.endpoint_url).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AMC_PIPELINE_RESULTS_URI", ROOT_URI)
        defs = build_definitions(r.config)
        texts: list[str] = []
        with dg.instance_for_test() as instance:
            for key in ("2026-10-05", "2026-10-06"):
                queued = materialize(r, defs, "campaign_performance", key, instance)
                assert queued.success
                r.drive(lambda key=key: r.status("campaign_performance", key) == "SUCCESS")
                landed = materialize(r, defs, "campaign_performance", key, instance)
                assert landed.success
                [event] = landed.get_asset_materialization_events()
                meta = event.materialization.metadata
                uri = meta["dagster/uri"].value
                assert uri == f"{ROOT_URI}/campaign_performance/window_start={key}/"
                assert r.store.get_live("campaign_performance", key).uri == uri
                checks = {c.check_name: c.passed for c in landed.get_asset_check_evaluations()}
                assert checks == {"schema_matches_previous": True, "has_rows": True}
                for run in (queued, landed):
                    texts += [serialize_value(e) for e in instance.all_logs(run.run_id)]
                    texts.append(serialize_value(instance.get_run_by_id(run.run_id)))
                texts.append(serialize_value(meta))

            rollup = dg.materialize([defs.get_assets_def(dg.AssetKey(["amc_rollups", "campaign_performance_weekly"]))],
                                    instance=instance)
            assert rollup.success
            [event] = rollup.get_asset_materialization_events()
            assert event.materialization.metadata["dagster/uri"].value == (
                f"{ROOT_URI}/_rollups/campaign_performance_weekly.parquet")
            texts += [serialize_value(e) for e in instance.all_logs(rollup.run_id)]
            records = instance.fetch_materializations(dg.AssetKey(["amc", "campaign_performance"]), limit=10)
            texts += [serialize_value(rec.event_log_entry) for rec in records.records]
        texts.append(store_text(r.store))

        root = resolve_results_root(ROOT_URI)
        table = pq.read_table(f"{BUCKET}/lake/_rollups/campaign_performance_weekly.parquet",
                              filesystem=root.filesystem)
        assert table.num_rows > 0
        assert not (tmp_path / "data" / "results").exists()
        joined = "\n".join(texts)
        assert ROOT_URI in joined  # the texts are the real ones
        assert FAKE_SECRET_ACCESS_KEY not in joined
