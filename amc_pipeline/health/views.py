"""Terminal and Markdown views of the execution store (the original system's history page)."""

from datetime import UTC, datetime
from typing import Any

from amc_pipeline.config import Settings
from amc_pipeline.store import states
from amc_pipeline.store.records import ExecutionView

STATUS_MARKS = {
    states.QUEUED: "📥",
    states.PENDING: "⏳",
    states.RUNNING: "🔄",
    states.SUCCESS: "✅",
    states.FAILED: "❌",
    states.CANCELLED: "⏹️",
    states.TIMEOUT: "⏰",
}


def _age(execution: ExecutionView, now: datetime) -> str:
    attempt = execution.attempt
    if attempt is None:
        return ""
    start = attempt.submitted_at or execution.requested_at
    end = attempt.completed_at or now
    seconds = max((end - start).total_seconds(), 0) if start else 0
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def row_for(execution: ExecutionView, now: datetime) -> dict[str, Any]:
    attempt = execution.attempt
    status = attempt.status if attempt else "?"
    return {
        "id": execution.id,
        "workflow": execution.workflow,
        "window": execution.partition_key,
        "status": status,
        "mark": STATUS_MARKS.get(status, "?"),
        "attempt": attempt.attempt if attempt else None,
        "amc_execution_id": attempt.amc_execution_id if attempt else None,
        "age": _age(execution, now),
        "rows": execution.rows,
        "error_type": attempt.error_type if attempt else None,
        "reason": (attempt.failure_reason or attempt.last_error) if attempt else None,
    }


def execution_rows(*, workflow: str | None = None, status: str | None = None, limit: int = 50,
                   store=None) -> list[dict[str, Any]]:
    if store is None:
        from amc_pipeline.store.cache import store_for

        store = store_for(Settings.from_env().database_url)
    now = datetime.now(UTC)
    return [row_for(e, now) for e in store.list_executions(workflow=workflow, status=status, limit=limit)]


def render_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no executions"
    header = ["", "workflow", "window", "status", "att", "age", "rows", "AMC id", "reason"]
    body = [
        [r["mark"], r["workflow"], r["window"], r["status"], str(r["attempt"] or ""), r["age"],
         "" if r["rows"] is None else str(r["rows"]), (r["amc_execution_id"] or "")[:13],
         (r["reason"] or "")[:60].replace("\n", " ")]
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=False)).rstrip()
             for line in [header, *body]]
    return "\n".join(lines)


def render_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| | workflow | window | status | attempt | age | rows | AMC execution | reason |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        reason = (r["reason"] or "").replace("|", "\\|").replace("\n", " ")[:80]
        lines.append(f"| {r['mark']} | {r['workflow']} | {r['window']} | {r['status']} | {r['attempt'] or ''} "
                     f"| {r['age']} | {'' if r['rows'] is None else r['rows']} | {r['amc_execution_id'] or ''} "
                     f"| {reason} |")
    return "\n".join(lines)
