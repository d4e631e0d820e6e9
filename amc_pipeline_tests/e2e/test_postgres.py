"""The flow again with production storage: the Dagster instance (dagster-postgres) and the execution store
both on the real PostgreSQL server, each in its own temporary database. Shorter: a backfill of two
partitions of one workflow. Skips when PostgreSQL is unreachable, except with CI=true, where it fails."""

from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from amc_pipeline_tests.e2e.conftest import running_stack
from amc_pipeline_tests.e2e.flow import (
    REPORT,
    compare_parquet_with_csvs,
    fetch_result_csvs,
    launch_backfill,
    materializations,
    metadata,
    partition_keys,
    sim_executions,
    sim_window,
)
from amc_pipeline_tests.e2e.stack import wait_until
from amc_pipeline_tests.pg import require_postgres, temp_database

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

WORKFLOW = "pg_reach"
START = (datetime.now(UTC) - timedelta(days=7)).date().isoformat()


def dagster_pg_storage(url: str) -> dict:
    parsed = make_url(url)
    return {"postgres": {"postgres_db": {
        "hostname": parsed.host or "127.0.0.1", "port": parsed.port or 5432, "username": parsed.username,
        "password": parsed.password or "", "db_name": parsed.database, "scheme": "postgresql+psycopg2",
    }}}


def scalar(url: str, sql: str) -> int:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar_one())
    finally:
        engine.dispose()


def test_backfill_lands_with_dagster_and_store_on_postgres(request: pytest.FixtureRequest, tmp_path):
    require_postgres()
    with ExitStack() as resources:
        dagster_url = resources.enter_context(temp_database("amc_e2e_dagster"))
        store_url = resources.enter_context(temp_database("amc_e2e_store"))
        # entered last, left first: every process is gone before the databases are dropped
        stack = resources.enter_context(running_stack(
            request, tmp_path / "pg-stack", daemon=False,
            workflows=[{"name": WORKFLOW, "start_date": START, "sql": "SELECT campaign, COUNT(1) AS n FROM t"}],
            sim_config={"client_id": "amzn1.application-oa2-client.pg", "client_secret": "pg-secret",
                        "refresh_token": "pg-refresh", "pending_seconds": 2, "running_seconds": 3},
            dagster_storage=dagster_pg_storage(dagster_url), store_url=store_url,
        ))
        partitions = partition_keys(stack, WORKFLOW)[-2:]
        launch_backfill(stack, [WORKFLOW], partitions)
        stack.start_daemon()
        events = wait_until(
            "2 landed partitions on PostgreSQL",
            lambda: (m := materializations(stack, WORKFLOW, partitions))
            and len({e["partition"] for e in m}) == 2 and m,
            timeout=180, interval=2, on_timeout=stack.dump_logs,
        )
        assert sorted(e["partition"] for e in events) == sorted(partitions)
        rows = 0
        for event in events:
            folder = stack.data_dir / "results" / WORKFLOW / f"window_start={event['partition']}"
            rows += compare_parquet_with_csvs(folder, fetch_result_csvs(stack, metadata(event)["amc/execution_id"]))
        executions = sim_executions(stack)
        assert sorted(sim_window(e) for e in executions) == sorted(partitions)

        # the state really lives in PostgreSQL: Dagster's runs and events, and our store
        assert scalar(dagster_url, "SELECT COUNT(*) FROM runs") >= 4  # 2 enqueue, monitor, 2 landings
        # (only the workflow's own: the metrics/overview assets may also materialize on their cron)
        assert scalar(dagster_url, "SELECT COUNT(*) FROM event_logs WHERE dagster_event_type = "
                                   "'ASSET_MATERIALIZATION' AND asset_key LIKE '%pg_reach%'") == 2
        assert scalar(store_url, "SELECT COUNT(*) FROM amc_executions WHERE landed_at IS NOT NULL") == 2
        assert not (stack.data_dir / "amc_pipeline.db").exists()
        assert not list(stack.dagster_home.glob("**/*.db"))
    REPORT.append(f"PostgreSQL (Dagster instance + store): 2 partitions landed, {rows} rows, Parquet == AMC CSVs")
