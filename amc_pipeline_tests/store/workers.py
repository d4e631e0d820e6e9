"""Jobs run at the same time by several threads (SQLite) or processes (PostgreSQL) in the race tests.

Each job opens its own ExecutionStore (its own engine and connections, like a separate monitor run)
and meets the others at a barrier right before the contended write, so the writes really overlap.
Importable top-level functions: multiprocessing's spawn start method needs them.
"""

import contextlib
import multiprocessing as mp
import queue
import threading
import traceback
from datetime import UTC, datetime, timedelta
from typing import Any

from amc_pipeline.store import ExecutionStore

T0 = datetime(2024, 9, 1, 12, 0, tzinfo=UTC)


def run_job(url: str, index: int, name: str, args: tuple[Any, ...], barrier: Any, results: Any) -> None:
    try:
        if name == "init":
            # Both jobs open a store on the same fresh database at once: the migrations race.
            barrier.wait(timeout=60)
        store = ExecutionStore(url, upgrade=name == "init")
        try:
            results.put((index, "ok", JOBS[name](store, barrier, *args)))
        finally:
            store.close()
    except BaseException:  # noqa: BLE001 - report everything to the test process
        with contextlib.suppress(Exception):
            barrier.abort()
        results.put((index, "error", traceback.format_exc()))


def init(store: ExecutionStore, barrier: Any) -> str | None:
    """The store's __init__ (upgrade=True) already raced the other job's migrations: report the revision."""
    from amc_pipeline.store.store import current_revision

    return current_revision(store.engine)


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


def run_concurrently(backend: str, url: str, jobs: list[tuple[str, tuple[Any, ...]]], timeout: float = 120) -> list:
    """Run `<name>(store, barrier, *args)` jobs at once and return their results in job order.

    Threads on SQLite (one process, separate connections), processes (spawn) on PostgreSQL: each job
    opens its own ExecutionStore. Every thread/process is stopped before returning, even on failure.
    """
    n = len(jobs)
    if backend == "sqlite":
        barrier: Any = threading.Barrier(n)
        results: Any = queue.Queue()
        threads = [
            threading.Thread(target=run_job, args=(url, i, name, args, barrier, results), daemon=True)
            for i, (name, args) in enumerate(jobs)
        ]
        for t in threads:
            t.start()
        try:
            collected = [results.get(timeout=timeout) for _ in jobs]
        finally:
            for t in threads:
                t.join(timeout=timeout)
    else:
        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(n)
        results = ctx.Queue()
        procs = [
            ctx.Process(target=run_job, args=(url, i, name, args, barrier, results), daemon=True)
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
