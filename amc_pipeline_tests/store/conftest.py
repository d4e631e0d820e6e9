"""Store fixtures: every store test runs on SQLite (a tmp_path file) and on real PostgreSQL.

PostgreSQL params get a uniquely named database (created on the `postgres` db, dropped afterwards
even on failure, leftover connections terminated); an unreachable server skips them with the
reason, or fails them when CI == "true".
"""

import queue
import threading
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import multiprocessing as mp
import pytest
from sqlalchemy.engine import make_url

from amc_pipeline.store import ExecutionStore
from amc_pipeline_tests.pg import require_postgres, temp_database
from amc_pipeline_tests.store import workers

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
T0 = datetime(2024, 9, 1, 12, 0, tzinfo=UTC)


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


def run_concurrently(backend: str, url: str, jobs: list[tuple[str, tuple[Any, ...]]], timeout: float = 120) -> list:
    """Run `workers.<name>(store, barrier, *args)` jobs at once and return their results in job order.

    Threads on SQLite (one process, separate connections), processes (spawn) on PostgreSQL: each job
    opens its own ExecutionStore. Every thread/process is stopped before returning, even on failure.
    """
    n = len(jobs)
    if backend == "sqlite":
        barrier: Any = threading.Barrier(n)
        results: Any = queue.Queue()
        threads = [
            threading.Thread(target=workers.run_job, args=(url, i, name, args, barrier, results), daemon=True)
            for i, (name, args) in enumerate(jobs)
        ]
        for t in threads:
            t.start()
        try:
            collected = [results.get(timeout=timeout) for _ in jobs]
        finally:
            barrier.abort() if any(t.is_alive() for t in threads) and results.empty() else None
            for t in threads:
                t.join(timeout=timeout)
    else:
        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(n)
        results = ctx.Queue()
        procs = [
            ctx.Process(target=workers.run_job, args=(url, i, name, args, barrier, results), daemon=True)
            for i, (name, args) in enumerate(jobs)
        ]
        for p in procs:
            p.start()
        try:
            collected = [results.get(timeout=timeout) for _ in jobs]
        finally:
            for p in procs:
                p.join(timeout=10)
                if p.is_alive():
                    p.terminate()
                    p.join(timeout=10)
            results.close()
    collected.sort(key=lambda r: r[0])
    errors = [r[2] for r in collected if r[1] == "error"]
    if errors:
        raise AssertionError("worker failed:\n" + "\n".join(errors))
    return [r[2] for r in collected]


_ = traceback
