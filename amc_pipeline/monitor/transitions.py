"""Applying what AMC reports to the store, through the one state machine.

Every write is a compare-and-set on the attempt's current status, so two overlapping monitor runs
cannot lose an update: the loser's write matches no row and it moves on.
"""

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from amc_pipeline.amc.errors import RETRYABLE_TYPES, ErrorType, classify_failure_reason
from amc_pipeline.amc.models import AmcExecution
from amc_pipeline.config import MonitorConfig, PipelineConfig
from amc_pipeline.monitor.events import PassReport, StatusChange
from amc_pipeline.store.records import Attempt, ExecutionView
from amc_pipeline.store.states import ACTIVE, CANCELLED, FAILED, SUCCESS, can_transition, from_amc
from amc_pipeline.store.store import ExecutionStore

log = logging.getLogger(__name__)


def move(
    store: ExecutionStore,
    execution: ExecutionView,
    attempt: Attempt,
    to_status: str,
    *,
    now: datetime,
    extra: dict[str, Any] | None = None,
    **fields: Any,
) -> StatusChange | None:
    """The engine's one status write: a compare-and-set from the attempt's status we read.

    `fields` are the attempt columns written with the status (`amc_execution_id`, `error_type`,
    `failure_reason`, ...). Returns the `StatusChange` it made, reporting the columns it wrote, so
    what the UI shows and what the store keeps cannot differ; None when the store refused it (the
    move is not allowed, or another monitor run moved the attempt first).
    """
    if not store.transition(attempt.id, attempt.status, to_status, now=now, **fields):
        return None
    return StatusChange(
        workflow=execution.workflow, partition_key=execution.partition_key, execution_id=execution.id,
        attempt=attempt.attempt, from_status=attempt.status, to_status=to_status,
        amc_execution_id=fields.get("amc_execution_id") or attempt.amc_execution_id,
        error_type=fields.get("error_type"), reason=fields.get("failure_reason"), extra=dict(extra or {}),
    )


def first_check_at(policy: MonitorConfig, now: datetime) -> datetime:
    return now + timedelta(seconds=policy.poll_initial_seconds)


def next_check_at(policy: MonitorConfig, attempt: Attempt, now: datetime) -> datetime:
    """Back off while nothing changes: wait about as long as the status has already held, bounded.

    AMC runs take 15 minutes or more; checking a two-hour-old RUNNING execution every 30 s wastes
    requests, and an idle system must launch no runs at all. Deriving the wait from the age of the
    current status (30 s, 30 s, 60 s, 120 s, … 300 s) needs no extra state.
    """
    since = attempt.status_changed_at or attempt.submitted_at or now
    held = max((now - since).total_seconds(), 0.0)
    wait = min(max(policy.poll_initial_seconds, held), policy.poll_max_seconds)
    return now + timedelta(seconds=wait)


def retry_delay(policy: MonitorConfig, retry_count: int) -> float:
    """60·2^n s, at most 300 s (the original system's resubmission backoff)."""
    return min(policy.retry_base_seconds * (2**retry_count), policy.retry_max_seconds)


def apply_observation(
    store: ExecutionStore,
    config: PipelineConfig,
    execution: ExecutionView,
    attempt: Attempt,
    amc: AmcExecution,
    now: datetime,
    report: PassReport,
) -> None:
    """Move `attempt` to the status AMC reports, or just schedule its next check."""
    policy = config.monitor
    new_status = from_amc(amc.status)
    report.checked += 1
    if new_status is None:
        log.warning("AMC execution %s reports unknown status %r; treated as in progress",
                    amc.execution_id, amc.status)
        store.record_check(attempt.id, now=now, next_check_at=next_check_at(policy, attempt, now))
        store.update_attempt(attempt.id, expect_status=attempt.status, amc_status=amc.status)
        return
    if new_status == attempt.status:
        store.record_check(attempt.id, now=now, next_check_at=next_check_at(policy, attempt, now))
        if amc.status != attempt.amc_status:
            store.update_attempt(attempt.id, expect_status=attempt.status, amc_status=amc.status)
        return
    if not can_transition(attempt.status, new_status):
        log.warning("refused transition %s -> %s for attempt %s (AMC %s says %s)",
                    attempt.status, new_status, attempt.id, amc.execution_id, amc.status)
        store.record_check(attempt.id, now=now, next_check_at=next_check_at(policy, attempt, now))
        return

    fields: dict[str, Any] = {"amc_status": amc.status, "last_checked_at": now, "error_count": 0}
    error_type: str | None = None
    reason: str | None = None
    if new_status in ACTIVE:
        fields["next_check_at"] = now + timedelta(seconds=policy.poll_initial_seconds)
    else:
        fields["next_check_at"] = None
    if new_status == SUCCESS:
        fields["execution_time_seconds"] = amc.execution_time_seconds
        fields["output_columns"] = json.dumps(
            [{"name": c.name, "dataType": c.data_type, "columnType": c.column_type} for c in amc.output_columns]
        )
    if new_status == FAILED:
        reason = amc.failure_reason or f"AMC reported {amc.status}"
        error_type = (
            ErrorType.QUERY.value if amc.status == "REJECTED" and not amc.failure_reason
            else classify_failure_reason(amc.failure_reason).value
        )
    if new_status == CANCELLED:
        reason = amc.failure_reason or "cancelled at AMC"

    if reason is not None:
        fields["failure_reason"] = reason
    if error_type is not None:
        fields["error_type"] = error_type
    change = move(store, execution, attempt, new_status, now=now, extra={"amc/status": amc.status}, **fields)
    if change is None:
        log.info("attempt %s changed under us (another monitor run); skipping", attempt.id)
        return
    report.changes.append(change)
    if new_status == FAILED and error_type is not None:
        maybe_retry(store, config, execution, attempt, ErrorType(error_type), now, report)


def maybe_retry(
    store: ExecutionStore,
    config: PipelineConfig,
    execution: ExecutionView,
    attempt: Attempt,
    error_type: ErrorType,
    now: datetime,
    report: PassReport,
) -> None:
    """A failure for a retryable reason gets a new attempt after backoff; others are final."""
    policy = config.monitor
    if error_type not in RETRYABLE_TYPES or attempt.retry_count >= policy.max_retries:
        return
    delay = retry_delay(policy, attempt.retry_count)
    new = store.new_attempt(execution.id, attempt.id, next_check_at=now + timedelta(seconds=delay), now=now)
    if new is not None:
        report.retried += 1
        log.info("%s/%s failed for a retryable reason (%s); attempt %s in %.0f s",
                 execution.workflow, execution.partition_key, error_type.value, new.attempt, delay)


def record_error(
    store: ExecutionStore,
    config: PipelineConfig,
    execution: ExecutionView,
    attempt: Attempt,
    error: str,
    error_type: ErrorType,
    now: datetime,
    report: PassReport,
) -> None:
    """An error about this one execution (e.g. 404 for its id); at the limit it becomes FAILED."""
    policy = config.monitor
    report.errors += 1
    updated = store.record_check(
        attempt.id, now=now, next_check_at=next_check_at(policy, attempt, now),
        error=error, error_type=error_type.value,
    )
    if updated.error_count >= policy.max_consecutive_errors:
        reason = f"{updated.error_count} consecutive errors checking the execution; last: {error}"
        change = move(store, execution, attempt, FAILED, now=now, error_type=error_type.value,
                      failure_reason=reason, next_check_at=None)
        if change is not None:
            report.changes.append(change)
