"""The PostgreSQL test helpers: skip vs fail when unreachable, and databases that really go away."""

from collections.abc import Callable

import pytest
from sqlalchemy import create_engine, text

from amc_pipeline.store import ExecutionStore
from amc_pipeline_tests import pg
from amc_pipeline_tests.store.helpers import enq

CLOSED_PORT_URL = "postgresql+psycopg2://postgres@127.0.0.1:1/postgres"


def test_unreachable_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg, "ADMIN_URL", CLOSED_PORT_URL)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="unreachable"):
        pg.require_postgres()


def test_unreachable_fails_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg, "ADMIN_URL", CLOSED_PORT_URL)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        pg.require_postgres()


def _exists(name: str) -> bool:
    engine = create_engine(pg.ADMIN_URL)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first() is not None
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_temp_database_is_dropped_even_with_open_connections() -> None:
    pg.require_postgres()
    with pytest.raises(RuntimeError, match="boom"), pg.temp_database("amc_helper") as url:
        name = url.rsplit("/", 1)[1]
        store = ExecutionStore(url)  # deliberately left open: teardown must still drop the database
        enq(store, "2024-09-01")
        assert _exists(name)
        raise RuntimeError("boom")
    store.close()
    assert not _exists(name)


@pytest.mark.postgres
def test_pg_url_factory_gives_separate_databases(pg_url: Callable[[str], str]) -> None:
    first, second = pg_url("amc_a"), pg_url("amc_b")
    assert first != second
    with ExecutionStore(first) as a, ExecutionStore(second) as b:
        enq(a, "2024-09-01")
        assert b.list_executions() == [] and len(a.list_executions()) == 1
