"""The production dagster.yaml loads against the real PostgreSQL and carries the run-queue limits."""

import shutil

import dagster as dg

from amc_pipeline.config import PROJECT_ROOT
from amc_pipeline_tests.pg import require_postgres, temp_database


def test_production_instance_config_loads_on_postgres(tmp_path, monkeypatch):
    require_postgres()
    with temp_database("amc_deploy") as url:
        db_name = url.rsplit("/", 1)[-1]
        for name, value in {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": "5432",
                            "DAGSTER_PG_USER": "postgres", "DAGSTER_PG_PASSWORD": "",
                            "DAGSTER_PG_DB": db_name}.items():
            monkeypatch.setenv(name, value)
        shutil.copyfile(PROJECT_ROOT / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")
        with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            settings = instance.get_concurrency_config()
            limits = {limit["key"]: limit for limit in settings.run_queue_config.tag_concurrency_limits}
            assert limits["amc/instance"]["limit"] == 2
            assert limits["amc/monitor"]["limit"] == 1
            assert settings.pool_config.default_pool_limit == 2
            assert instance.run_monitoring_enabled and instance.run_retries_enabled
            # A run can be stored and read back: the schema was created in the real database.
            run = instance.create_run_for_job(dg.GraphDefinition("noop").to_job())
            assert instance.get_run_by_id(run.run_id) is not None
