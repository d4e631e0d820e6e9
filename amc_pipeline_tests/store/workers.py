"""Jobs run at the same time by several threads (SQLite) or processes (PostgreSQL) in the race tests.

Each job opens its own ExecutionStore (its own engine and connections, like a separate monitor run)
and meets the others at a barrier right before the contended write, so the writes really overlap.
Importable top-level functions: multiprocessing's spawn start method needs them.
"""

import traceback
from datetime import UTC, datetime, timedelta
from typing import Any

from amc_pipeline.store import ExecutionStore

T0 = datetime(2024, 9, 1, 12, 0, tzinfo=UTC)


def run_job(url: str, index: int, name: str, args: tuple[Any, ...], barrier: Any, results: Any) -> None:
    try:
        store = ExecutionStore(url, upgrade=name == "init")
        try:
            results.put((index, "ok", JOBS[name](store, barrier, *args)))
        finally:
            store.close()
    except BaseException:  # noqa: BLE001 - report everything to the test process
        try:
            barrier.abort()
        except Exception:  # noqa: BLE001
            pass
        results.put((index, "error", traceback.format_exc()))


def init(store: ExecutionStore, barrier: Any) -> str:
    """Nothing: the store's __init__ (upgrade=True) already raced the other job's migrations."""
    return "ok"


def init_race(url: str, barrier: Any) -> None:  # pragma: no cover - kept for symmetry
    pass


def cas(store: ExecutionStore, barrier: Any, attempt_ids: list[int], to_status: str) -> list[bool]:
    out = []
    for attempt_id in attempt_ids:
        barrier.wait(timeout=60)
        out.append(store.transition(attempt_id, "PENDING", to_status, now=T0))
    return out


def begin_submit(store: ExecutionStore, barrier: Any, attempt_ids: list[int]) -> list[bool]:
    out = []
    for attempt_id in attempt_ids:
        barrier.wait(timeout=60)
        out.append(store.begin_submit(attempt_id, T0))
    return out


def count_errors(store: ExecutionStore, barrier: Any, attempt_id: int, times: int) -> int:
    barrier.wait(timeout=60)
    for i in range(times):
        store.record_check(attempt_id, now=T0, next_check_at=T0 + timedelta(seconds=i), error=f"e{i}")
    return times


def enqueue(store: ExecutionStore, barrier: Any, keys: list[str]) -> list[tuple[str, int, bool]]:
    out = []
    for key in keys:
        barrier.wait(timeout=60)
        view, created = store.enqueue(
            workflow="race", instance_id="inst", partition_key=key, window_start=T0, window_end=T0, now=T0
        )
        out.append((key, view.id, created))
    return out


def new_attempt(store: ExecutionStore, barrier: Any, pairs: list[tuple[int, int]]) -> list[int | None]:
    out = []
    for execution_id, previous in pairs:
        barrier.wait(timeout=60)
        attempt = store.new_attempt(execution_id, previous, next_check_at=T0, now=T0)
        out.append(attempt.id if attempt is not None else None)
    return out


JOBS = {
    "init": init,
    "cas": cas,
    "begin_submit": begin_submit,
    "count_errors": count_errors,
    "enqueue": enqueue,
    "new_attempt": new_attempt,
}
