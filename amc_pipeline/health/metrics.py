"""Execution metrics from the store: counts by status, queue and run time percentiles, error rates.

Why in the engine: `amc/execution_metrics` shows them in the UI, and the same figures are what a
person checks from a notebook or the terminal; computing them needs nothing of Dagster.
"""

import statistics
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any

from amc_pipeline.store import states
from amc_pipeline.store.records import Attempt, ExecutionView
from amc_pipeline.store.store import ExecutionStore

METRICS_WINDOW = timedelta(days=7)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return float(values[0])
    return float(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1])


def _scope(items: list[tuple[ExecutionView, Attempt]]) -> dict[str, Any]:
    current = [(e, a) for e, a in items if e.current_attempt_id == a.id and e.live]
    by_status = Counter(a.status for _, a in current)
    queue = [(a.submitted_at - e.requested_at).total_seconds() for e, a in items
             if a.submitted_at and a.attempt == 1]
    run = [a.execution_time_seconds or (a.completed_at - a.submitted_at).total_seconds()
           for _, a in items if a.status == states.SUCCESS and a.submitted_at and a.completed_at]
    errors = Counter(a.error_type for _, a in items
                     if a.status in (states.FAILED, states.TIMEOUT) and a.error_type)
    finished = sum(1 for _, a in items if a.status in states.TERMINAL)
    landed = {e.id: e for e, _ in current if e.landed_at}
    return {
        "executions": len(current),
        **{f"status_{s.lower()}": by_status.get(s, 0) for s in states.STATUSES},
        "queue_p50_seconds": round(percentile(queue, 50), 1),
        "queue_p95_seconds": round(percentile(queue, 95), 1),
        "run_p50_seconds": round(percentile(run, 50), 1),
        "run_p95_seconds": round(percentile(run, 95), 1),
        "error_rate": round(sum(errors.values()) / finished, 3) if finished else 0.0,
        **{f"errors_{t.lower()}": n for t, n in errors.items()},
        "rows_landed": sum(e.rows or 0 for e in landed.values()),
        "bytes_landed": sum(e.bytes or 0 for e in landed.values()),
    }


def compute_metrics(store: ExecutionStore, workflows: list[str], now: datetime) -> dict[str, dict[str, Any]]:
    """Per workflow and "overall", over the attempts of the last `METRICS_WINDOW`."""
    groups: dict[str, list[tuple[ExecutionView, Attempt]]] = defaultdict(list)
    for execution, attempt in store.attempts_since(now - METRICS_WINDOW):
        groups[execution.workflow].append((execution, attempt))
        groups["overall"].append((execution, attempt))
    return {name: _scope(groups.get(name, [])) for name in ["overall", *workflows]}
