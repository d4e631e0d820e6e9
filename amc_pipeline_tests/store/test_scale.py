"""due_summary with 10,000+ attempts: right answers, aggregates only, every statement index-served.

No wall-clock assertions: we check the query plans instead (SQLite EXPLAIN QUERY PLAN must SEARCH an
index, PostgreSQL EXPLAIN must not Seq Scan the attempts table) and that no statement returns rows
beyond the counts and the 20 oldest ids.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import event, text, update

from amc_pipeline.store import ExecutionStore
from amc_pipeline.store.tables import amc_execution_attempts as A
from amc_pipeline.store.tables import amc_executions as E
from amc_pipeline_tests.store.helpers import T0, at

N_HISTORY = 9_000


def _populate(store: ExecutionStore) -> dict[str, Any]:
    """Bulk-insert a realistic mix: mostly finished history, a few hundred live, some due."""
    groups: list[tuple[str, int, bool, int]] = [  # status, how many, submit started, next check offset (s)
        ("SUCCESS", N_HISTORY, True, -86_400),
        ("FAILED", 300, True, -86_400),
        ("QUEUED", 500, False, 3_600),  # queued, backing off
        ("QUEUED", 40, False, -30),  # due for submit
        ("QUEUED", 10, True, -20),  # ambiguous, due
        ("QUEUED", 5, True, 600),  # ambiguous, not yet
        ("PENDING", 200, True, 900),
        ("PENDING", 100, True, -10),
        ("RUNNING", 100, True, 1_800),
        ("RUNNING", 50, True, -5),
    ]
    executions, attempts = [], []
    n = 0
    for status, count, started, offset in groups:
        for i in range(count):
            n += 1
            executions.append(
                {
                    "id": n,
                    "workflow": f"wf{n % 7}",
                    "instance_id": f"inst{n % 3}",
                    "partition_key": f"k{n}",
                    "window_start": T0,
                    "window_end": T0,
                    "requested_at": at(-100_000 + n),
                    "live": True,
                    "land_attempts": 0,
                }
            )
            attempts.append(
                {
                    "id": n,
                    "execution_id": n,
                    "attempt": 1,
                    "status": status,
                    "client_token": f"tok{n:08d}",
                    "amc_execution_id": f"amc{n}" if status != "QUEUED" else None,
                    "created_at": at(-100_000),
                    "submit_started_at": at(-90_000) if started else None,
                    "submitted_at": at(-90_000) if status != "QUEUED" else None,
                    "next_check_at": at(offset - i * 0.001),
                    "error_count": 0,
                    "retry_count": 0,
                }
            )
    with store.engine.begin() as conn:
        conn.execute(E.insert(), executions)
        conn.execute(A.insert(), attempts)
        conn.execute(update(E).values(current_attempt_id=E.c.id))
        if conn.dialect.name == "postgresql":
            for table in ("amc_executions", "amc_execution_attempts"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {n})"))
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    return {"total": n}


@contextmanager
def _captured(store: ExecutionStore) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", before)


def test_due_summary_with_10k_rows_is_index_served(store: ExecutionStore, backend: str) -> None:
    total = _populate(store)["total"]
    assert total > 10_000
    with _captured(store) as statements:
        summary = store.due_summary(T0)
    assert (summary.submit_due, summary.ambiguous, summary.poll_due) == (40, 10, 150)
    assert summary.next_due_at is not None and summary.next_due_at < at(-30)
    assert len(summary.oldest_due_ids) == 20
    # oldest first: the 40 due QUEUED have next_check_at around at(-30), the earliest of all due
    due_times = [store.get_attempt(i).next_check_at for i in summary.oldest_due_ids]
    assert due_times == sorted(due_times) and due_times[-1] <= at(-30)
    assert store.due_summary(T0 + timedelta(days=1)).poll_due == 450

    assert statements, "due_summary ran no SELECT?"
    with store.engine.connect() as conn:
        for statement, params in statements:
            if backend == "sqlite":
                plan = [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)]
                touching = [p for p in plan if "amc_execution_attempts" in p]
                assert touching, plan
                for step in touching:
                    assert step.startswith("SEARCH") and "INDEX" in step, (statement, plan)
            else:
                plan_text = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + statement, params))
                assert "Seq Scan on amc_execution_attempts" not in plan_text, (statement, plan_text)
                assert "Index" in plan_text, plan_text
