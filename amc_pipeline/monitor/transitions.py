"""Applying what AMC reports to the store, through the one state machine.

Every write is a compare-and-set on the attempt's current status, so two overlapping monitor runs
cannot lose an update: the loser's write matches no row and it moves on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from amc_pipeline.amc.errors import RETRYABLE_TYPES, ErrorType, classify_failure_reason
from amc_pipeline.amc.models import AmcExecution
from amc_pipeline.config import MonitorConfig, PipelineConfig
from amc_pipeline.monitor.events import PassReport, StatusChange
from amc_pipeline.monitor.packing import retry_members
from amc_pipeline.store.records import Attempt, ExecutionView
from amc_pipeline.store.states import (
    ACTIVE,
    CANCELLED,
    FAILED,
    PENDING,
    RUNNING,
    SUCCESS,
    can_transition,
    from_amc,
)
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
    amc_id = fields.get("amc_execution_id") or attempt.amc_execution_id
    members = tuple(
        StatusChange(
            workflow=e.workflow, partition_key=e.partition_key, execution_id=e.id, attempt=m.attempt,
            from_status=attempt.status, to_status=to_status, amc_execution_id=amc_id,
            error_type=fields.get("error_type"), reason=fields.get("failure_reason"),
            extra={**(extra or {}), "amc/pack_leader_partition": execution.partition_key},
        )
        for e, m in store.pack_members(attempt.id)
        if m.status == to_status and m.status_changed_at == now  # moved by this very write
    )
    return StatusChange(
        workflow=execution.workflow, partition_key=execution.partition_key, execution_id=execution.id,
        attempt=attempt.attempt, from_status=attempt.status, to_status=to_status,
        amc_execution_id=amc_id,
        error_type=fields.get("error_type"), reason=fields.get("failure_reason"), extra=dict(extra or {}),
        members=members,
    )


class Scheduled(Protocol):
    """What the plan reads of an attempt: an `Attempt` or a store `DueCheck` (same field names)."""

    status: str
    created_at: datetime | None
    submitted_at: datetime | None
    started_at: datetime | None
    status_changed_at: datetime | None


class CheckPlan(Protocol):
    """Decides when an active execution is next checked (`RunTimePlan`; the benchmark has others)."""

    def next_check(self, workflow: str | None, item: Scheduled, now: datetime) -> datetime: ...


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of ascending values (q in [0, 1])."""
    if not sorted_values:
        raise ValueError("quantile of no values")
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass(frozen=True)
class RunTimes:
    """What the store knows about how long a workflow's runs take at AMC (recent SUCCESS running times)."""

    seconds: tuple[float, ...]  # ascending

    @classmethod
    def of(cls, values: Iterable[float]) -> RunTimes:
        return cls(tuple(sorted(values)))

    def watch_from(self, policy: MonitorConfig) -> float:
        """Running time (s) from which this workflow's run may finish: `poll_watch_lead` x the
        `poll_watch_quantile` of its past runs."""
        return policy.poll_watch_lead * quantile(self.seconds, policy.poll_watch_quantile)

    def tail_from(self, policy: MonitorConfig) -> float:
        """Running time (s) past which the run is far longer than any known one: the plan backs off."""
        return policy.poll_tail_factor * self.seconds[-1]


class RunTimePlan:
    """When each active execution next needs a status check, from what the store knows of its workflow.

    A status pass costs per instance (one list page answers 100 statuses), so the poll pass checks every
    active execution of an instance together; each one's next check here is only what *it* needs, and
    the instance's next pass is the earliest of them (`instance_next_pass`). What one needs:

    - early: for `poll_early_seconds` after submit, every `poll_initial_seconds` (AMC rejects bad SQL
      and missing permissions within a minute);
    - PENDING (queued at AMC): every `poll_pending_seconds`;
    - RUNNING, with `poll_history_min_runs` or more past runs of the workflow (else the pooled runs of
      every workflow on the instance): quiet until `RunTimes.watch_from` (one gap of at most
      `poll_max_seconds`, never past the start of the watch), then every `poll_watch_seconds` (this is
      the detection latency), and past `RunTimes.tail_from` a gap that grows with the overrun;
    - RUNNING with nothing known: a gap of `poll_backoff_fraction` x its running time so far.

    Every gap lies in [min(poll_initial, poll_max), poll_max_seconds]. The running time counts from
    when we first saw RUNNING plus one PENDING gap (AMC may have started it just after the previous
    check), so the watch never starts late.
    """

    def __init__(self, policy: MonitorConfig, history: Mapping[str, Iterable[float]] | None = None) -> None:
        self.policy = policy
        enough = policy.poll_history_min_runs
        known = {w: RunTimes.of(v) for w, v in (history or {}).items()}
        self.by_workflow = {w: r for w, r in known.items() if len(r.seconds) >= enough}
        pooled = RunTimes.of(s for r in known.values() for s in r.seconds)
        self.pooled = pooled if len(pooled.seconds) >= enough else None

    def runs_for(self, workflow: str | None) -> RunTimes | None:
        return self.by_workflow.get(workflow or "", self.pooled)

    def wait_seconds(self, workflow: str | None, item: Scheduled, now: datetime) -> float:
        p = self.policy
        cap = p.poll_max_seconds
        floor = min(p.poll_initial_seconds, cap)
        submitted = item.submitted_at or item.created_at or now
        if (now - submitted).total_seconds() < p.poll_early_seconds:
            return floor
        if item.status == PENDING:
            return min(max(p.poll_pending_seconds, floor), cap)
        watch = min(max(p.poll_watch_seconds, floor), cap)
        since = item.started_at or item.status_changed_at or submitted
        running = max((now - since).total_seconds(), 0.0) + min(p.poll_pending_seconds, cap)
        runs = self.runs_for(workflow)
        if runs is None:
            return min(max(p.poll_backoff_fraction * running, watch), cap)
        start, tail = runs.watch_from(p), runs.tail_from(p)
        if running < start:
            return min(max(start - running, watch), cap)
        if running <= tail:
            return watch
        return min(max(running - tail, watch), cap)

    def next_check(self, workflow: str | None, item: Scheduled, now: datetime) -> datetime:
        return now + timedelta(seconds=self.wait_seconds(workflow, item, now))


def instance_next_pass(plan: RunTimePlan, items: Iterable[tuple[str, Scheduled]], now: datetime) -> datetime | None:
    """When an instance's next status pass is due: the earliest next check of its active executions
    ((workflow, attempt) pairs); None when it has none."""
    return min((plan.next_check(w, i, now) for w, i in items), default=None)


def first_check_at(policy: MonitorConfig, now: datetime) -> datetime:
    return now + timedelta(seconds=policy.poll_initial_seconds)


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
    plan: CheckPlan | None = None,
) -> None:
    """Move `attempt` to the status AMC reports, or just schedule its next check (`plan`: the pass's
    `RunTimePlan`; without one, nothing is known about past runs)."""
    plan = plan or RunTimePlan(config.monitor)
    new_status = from_amc(amc.status)
    report.checked += 1
    workflow = execution.workflow

    def next_check_at(a: Scheduled) -> datetime:
        return plan.next_check(workflow, a, now)

    if new_status is None:
        log.warning("AMC execution %s reports unknown status %r; treated as in progress",
                    amc.execution_id, amc.status)
        store.record_check(attempt.id, now=now, next_check_at=next_check_at(attempt))
        store.update_attempt(attempt.id, expect_status=attempt.status, amc_status=amc.status)
        return
    if new_status == attempt.status:
        store.record_check(attempt.id, now=now, next_check_at=next_check_at(attempt))
        if amc.status != attempt.amc_status:
            store.update_attempt(attempt.id, expect_status=attempt.status, amc_status=amc.status)
        return
    if not can_transition(attempt.status, new_status):
        log.warning("refused transition %s -> %s for attempt %s (AMC %s says %s)",
                    attempt.status, new_status, attempt.id, amc.execution_id, amc.status)
        store.record_check(attempt.id, now=now, next_check_at=next_check_at(attempt))
        return

    fields: dict[str, Any] = {"amc_status": amc.status, "last_checked_at": now, "error_count": 0}
    error_type: str | None = None
    reason: str | None = None
    if new_status in ACTIVE:
        moved = replace(attempt, status=new_status, status_changed_at=now,
                        started_at=attempt.started_at or (now if new_status == RUNNING else None))
        fields["next_check_at"] = next_check_at(moved)
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
        report.retried += 1 + retry_members(store, attempt, now + timedelta(seconds=delay), now)
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
    plan: CheckPlan | None = None,
) -> None:
    """An error about this one execution (e.g. 404 for its id); at the limit it becomes FAILED."""
    policy = config.monitor
    plan = plan or RunTimePlan(policy)
    report.errors += 1
    updated = store.record_check(
        attempt.id, now=now, next_check_at=plan.next_check(execution.workflow, attempt, now),
        error=error, error_type=error_type.value,
    )
    if updated.error_count >= policy.max_consecutive_errors:
        reason = f"{updated.error_count} consecutive errors checking the execution; last: {error}"
        change = move(store, execution, attempt, FAILED, now=now, error_type=error_type.value,
                      failure_reason=reason, next_check_at=None)
        if change is not None:
            report.changes.append(change)
