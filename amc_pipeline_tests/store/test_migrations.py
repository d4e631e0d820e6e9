"""Migrations: upgrading keeps rows, head equals tables.py, and the scripts ship inside the package."""

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from setuptools import find_packages
from sqlalchemy import inspect, select

from amc_pipeline.store import ExecutionStore
from amc_pipeline.store.store import (
    MIGRATIONS_DIR,
    alembic_config,
    current_revision,
    head_revision,
    make_engine,
    upgrade_database,
)
from amc_pipeline.store.tables import amc_execution_attempts as A
from amc_pipeline.store.tables import amc_executions as E
from amc_pipeline.store.tables import metadata
from amc_pipeline_tests.store.helpers import T0, at

REPO = Path(__file__).resolve().parents[2]


def _attempt_indexes(engine) -> set[str]:
    return {ix["name"] for ix in inspect(engine).get_indexes("amc_execution_attempts")}


def test_upgrade_from_0001_keeps_rows(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade_database(engine, "0001")
        assert current_revision(engine) == "0001"
        assert "ix_amc_execution_attempts_due" not in _attempt_indexes(engine)
        with engine.begin() as conn:
            execution_id = conn.execute(
                E.insert()
                .values(
                    workflow="wf",
                    instance_id="inst",
                    partition_key="2024-09-01",
                    window_start=T0,
                    window_end=at(86400),
                    requested_at=T0,
                    live=True,
                )
                .returning(E.c.id)
            ).scalar_one()
            attempt_id = conn.execute(
                A.insert()
                .values(
                    execution_id=execution_id,
                    attempt=1,
                    status="PENDING",
                    client_token="abcdef012345",
                    amc_execution_id="amc-old",
                    created_at=T0,
                    submit_started_at=T0,
                    submitted_at=T0,
                    next_check_at=at(60),
                )
                .returning(A.c.id)
            ).scalar_one()
            conn.execute(E.update().values(current_attempt_id=attempt_id))
    finally:
        engine.dispose()

    with ExecutionStore(db_url) as store:  # upgrades to head on init
        assert current_revision(store.engine) == head_revision() == "0006"
        assert "ix_amc_execution_attempts_due" in _attempt_indexes(store.engine)
        view = store.get(execution_id)
        assert (view.workflow, view.partition_key, view.window_start, view.live) == ("wf", "2024-09-01", T0, True)
        assert view.attempt.amc_execution_id == "amc-old" and view.status == "PENDING"
        assert view.attempt.error_count == 0 and view.land_attempts == 0  # server defaults filled at 0001
        # the old rows work with the new code
        again, created = store.enqueue(
            workflow="wf", instance_id="inst", partition_key="2024-09-01", window_start=T0, window_end=at(86400)
        )
        assert not created and again.id == execution_id
        assert [a.id for _, a in store.due_for_poll(at(60))] == [attempt_id]
        store.upgrade()  # idempotent at head
        with store.engine.connect() as conn:
            assert conn.execute(select(E.c.id)).scalars().all() == [execution_id]


def test_head_schema_matches_tables(store: ExecutionStore) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_revisions_are_linear() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert [s.revision for s in script.walk_revisions()] == ["0006", "0005", "0004", "0003", "0002", "0001"]
    assert script.get_heads() == ["0006"]


def test_migration_scripts_ship_in_the_package() -> None:
    """The wheel includes `amc_pipeline*` packages: the migration folders must be packages."""
    assert MIGRATIONS_DIR == REPO / "amc_pipeline" / "store" / "migrations"
    packages = find_packages(str(REPO), include=["amc_pipeline*"], exclude=["amc_pipeline_tests*"])
    assert "amc_pipeline.store.migrations" in packages
    assert "amc_pipeline.store.migrations.versions" in packages
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert sorted(p.name for p in (MIGRATIONS_DIR / "versions").glob("0*.py")) == [
        "0001_initial.py",
        "0002_due_indexes.py",
        "0003_heartbeats.py",
        "0004_notifications.py",
        "0005_execution_origin.py",
        "0006_packs.py",
    ]
