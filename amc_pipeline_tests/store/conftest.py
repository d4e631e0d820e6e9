"""Store fixtures: every store test runs on SQLite (a tmp_path file) and on real PostgreSQL.

PostgreSQL params get a uniquely named database (created on the `postgres` db, dropped afterwards
even on failure, leftover connections terminated); an unreachable server skips them with the
reason, or fails them when CI == "true".
"""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from amc_pipeline.store import ExecutionStore
from amc_pipeline_tests.pg import require_postgres, temp_database

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture
def pg_url() -> Iterator[Callable[[str], str]]:
    """Factory: `pg_url(prefix)` -> URL of a fresh PostgreSQL database, all dropped at teardown."""
    require_postgres()
    stack: list[Any] = []

    def make(prefix: str = "amc_store") -> str:
        cm = temp_database(prefix)
        url = cm.__enter__()
        stack.append(cm)
        return url

    try:
        yield make
    finally:
        while stack:
            stack.pop().__exit__(None, None, None)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """An empty database URL of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/store/executions.db"
        return
    require_postgres()
    with temp_database("amc_store") as url:
        yield url


@pytest.fixture
def backend(db_url: str) -> str:
    return make_url(db_url).get_backend_name()


@pytest.fixture
def store(db_url: str) -> Iterator[ExecutionStore]:
    s = ExecutionStore(db_url)
    try:
        yield s
    finally:
        s.close()
