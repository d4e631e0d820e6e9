"""What materializing a window means: enqueue, supersede, cancel, wait, or land.

Why in the engine and not in the asset: the same decision is made from a UI click, a schedule, a
backfill and the landing sensor's request, and its rules (never a duplicate execution, a failed
window is re-queued, a forced re-run cancels the old execution at AMC) are the lifecycle's, not
Dagster's. The workflow asset calls `request_window`, reports the outcome, and for `LAND` calls
`land_window`; every status write here goes through `transitions.move` or the store's own
compare-and-set, and comes back as `StatusChange`s the asset turns into observations.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from amc_pipeline.amc.client import AmcClient
from amc_pipeline.config import InstanceConfig, MonitorConfig, WorkflowConfig
from amc_pipeline.monitor.cancel import IN_FLIGHT, cancel_superseded
from amc_pipeline.monitor.events import StatusChange
from amc_pipeline.partitions import Window
from amc_pipeline.results.iceberg import IcebergSettings
from amc_pipeline.results.landing import LandingResult, land_execution
from amc_pipeline.results.storage import ResultsRoot
from amc_pipeline.store.records import Attempt, ExecutionView
from amc_pipeline.store.states import CANCELLED, QUEUED, SUCCESS, TERMINAL
from amc_pipeline.store.store import ExecutionStore

log = logging.getLogger(__name__)

#: An execution that ended in one of these is re-queued when its window is materialized again.
REQUEUE_AFTER: frozenset[str] = TERMINAL - {SUCCESS}


class Action(enum.Enum):
    """What a materialization of the window did, or must do next."""

    QUEUED = "queued"  # a new execution waits for the monitor
    FOUND = "found"  # an execution for the window was already queued or running
    REQUEUED = "requeued"  # forced, or the previous execution ended for good without success
    WAITING = "waiting"  # the execution exists and has not succeeded yet
    LANDED = "landed"  # already landed and no redownload asked
    LAND = "land"  # SUCCESS and not landed (or redownload): the caller lands it now
    FAILED = "failed"  # a failure report: the window's execution failed for good; the run must fail


@dataclass(frozen=True)
class WindowOutcome:
    action: Action
    execution: ExecutionView
    message: str
    changes: list[StatusChange] = field(default_factory=list)


def report_failure(store: ExecutionStore, workflow: WorkflowConfig, window: Window) -> WindowOutcome | None:
    """For a run that reports a failure: the window's failed-for-good outcome, or None if it is not.

    Never enqueues: the window may have been re-queued since the report was asked for, and then
    there is nothing to report (None). Why a run at all: Dagster shows a partition as Failed when
    the latest run meant to materialize it failed, which is the truth of a window AMC failed.
    """
    execution = store.get_live(workflow.name, window.partition_key)
    attempt = execution.attempt if execution is not None else None
    if execution is None or attempt is None or attempt.status not in REQUEUE_AFTER:
        return None
    reason = attempt.failure_reason or attempt.last_error or "no reason given"
    leading = store.pack_of(attempt) if attempt.is_pack_member else None  # the pack's execution, if packed
    amc_id = attempt.amc_execution_id or (leading[1].amc_execution_id if leading else None)
    packed = f" (packed with {leading[0].partition_key})" if leading else ""
    return WindowOutcome(
        Action.FAILED, execution,
        f"{workflow.name}/{window.partition_key}: AMC execution {amc_id or '(never created)'}{packed} "
        f"attempt {attempt.attempt} ended {attempt.status}"
        f"{f' ({attempt.error_type})' if attempt.error_type else ''}: {reason}. "
        f"Materialize the partition again to queue a new execution.")


def request_window(
    store: ExecutionStore,
    workflow: WorkflowConfig,
    instance: InstanceConfig,
    window: Window,
    *,
    client: Callable[[], AmcClient],
    force_new: bool = False,
    redownload: bool = False,
    now: datetime | None = None,
) -> WindowOutcome:
    """Decide and do what materializing `window` of `workflow` means now.

    `client` is called only when an execution must be cancelled at AMC, so the common paths make no
    request at all.
    """
    now = now or datetime.now(UTC)
    key = window.partition_key
    label = f"{workflow.name}/{key}"
    execution = store.get_live(workflow.name, key)
    previous = execution.attempt if execution is not None else None

    if force_new or (previous is not None and previous.status in REQUEUE_AFTER):
        forced = store.enqueue_forced(
            workflow=workflow.name, instance_id=window.instance_id, partition_key=key,
            window_start=window.start_utc, window_end=window.end_utc, now=now,
        )
        changes = []
        why = "forced by run config" if force_new else f"the previous execution ended {previous.status}"
        if forced.superseded is not None:
            old, old_attempt, cancelled = forced.superseded
            if cancelled and old_attempt is not None:
                changes.append(_superseded_change(old, old_attempt))
            elif old_attempt is not None and old_attempt.status in IN_FLIGHT:
                change = cancel_superseded(store, client, instance, old, old_attempt, now)
                if change is not None:
                    changes.append(change)
        return WindowOutcome(
            Action.REQUEUED, forced.execution,
            f"{label}: new AMC execution queued ({why}); the landing sensor materializes this partition "
            f"when AMC finishes", changes)

    if execution is None:
        execution, created = store.enqueue(
            workflow=workflow.name, instance_id=window.instance_id, partition_key=key,
            window_start=window.start_utc, window_end=window.end_utc, now=now,
        )
        return WindowOutcome(
            Action.QUEUED if created else Action.FOUND, execution,
            f"{label}: {'queued a new' if created else 'found a queued'} AMC execution for "
            f"{window.start_local:%Y-%m-%d %H:%M} – {window.end_local:%Y-%m-%d %H:%M} {window.timezone}; "
            f"no materialization yet. The monitor submits it within the instance's limits and the "
            f"landing sensor materializes this partition when AMC finishes.")

    attempt = execution.attempt
    assert attempt is not None
    if attempt.status != SUCCESS:
        age = (now - (attempt.status_changed_at or execution.requested_at)).total_seconds() / 60
        return WindowOutcome(
            Action.WAITING, execution,
            f"{label}: AMC execution {attempt.amc_execution_id or '(not yet submitted)'} attempt "
            f"{attempt.attempt} is {attempt.status} for {age:.0f} min; no materialization yet")
    if execution.landed_attempt_id == attempt.id and not redownload:
        return WindowOutcome(
            Action.LANDED, execution,
            f"{label}: already landed at {execution.landed_at:%Y-%m-%d %H:%M} UTC ({execution.rows} rows, "
            f"{execution.uri}); set redownload: true to fetch it again")
    return WindowOutcome(Action.LAND, execution,
                         f"{label}: landing AMC execution {attempt.amc_execution_id}")


def _superseded_change(old: ExecutionView, attempt: Attempt) -> StatusChange:
    """The QUEUED attempt that a forced re-run cancelled in the store (it never reached AMC)."""
    return StatusChange(
        workflow=old.workflow, partition_key=old.partition_key, execution_id=old.id, attempt=attempt.attempt,
        from_status=QUEUED, to_status=CANCELLED, amc_execution_id=attempt.amc_execution_id,
        reason=attempt.last_error,
    )


@dataclass(frozen=True)
class Landed:
    """A landing that completed: the files' figures, and AMC's request id when we asked AMC."""

    landing: LandingResult
    request_id: str | None
    land_attempt: int


def land_window(
    store: ExecutionStore,
    client: AmcClient,
    instance: InstanceConfig,
    execution: ExecutionView,
    policy: MonitorConfig,
    *,
    data_dir: Path,
    results: ResultsRoot | str | None = None,
    iceberg: IcebergSettings | None = None,
    logger: Any = log,
    now: datetime | None = None,
) -> Landed:
    """Land the window's SUCCESS execution under a lease; on failure record why and when to retry.

    The previous version of the partition stays intact on any failure (the landing swaps a complete
    staging folder in); the failure is re-raised after it is recorded so the run fails visibly.
    """
    now = now or datetime.now(UTC)
    attempt = execution.attempt
    assert attempt is not None and attempt.amc_execution_id is not None
    output_columns = json.loads(attempt.output_columns) if attempt.output_columns else []
    request_id = None
    land_attempt = store.begin_landing(execution.id, lease_until=now + timedelta(seconds=policy.landing_lease_seconds))
    logger.info(f"{execution.workflow}/{execution.partition_key}: landing attempt {land_attempt} of AMC "
                f"execution {attempt.amc_execution_id}")
    try:
        if not output_columns:
            amc_exec = client.get_execution(instance, attempt.amc_execution_id)
            request_id = amc_exec.request_id
            output_columns = [{"name": c.name, "dataType": c.data_type} for c in amc_exec.output_columns]
        landing = land_execution(
            client, instance, attempt.amc_execution_id, output_columns, data_dir=data_dir, results=results,
            iceberg=iceberg,
            workflow=execution.workflow, partition_key=execution.partition_key, logger=logger,
        )
    except Exception as exc:
        delay = policy.landing_retry_seconds * 2 ** min(land_attempt - 1, 6)
        store.record_land_failure(execution.id, error=f"{type(exc).__name__}: {exc}"[:2000],
                                  next_land_at=datetime.now(UTC) + timedelta(seconds=delay), now=now)
        logger.error(f"{execution.workflow}/{execution.partition_key}: landing attempt {land_attempt} failed: "
                     f"{exc}; the previous version (if any) is intact and the landing sensor retries")
        raise
    store.record_landed(execution.id, attempt.id, rows=landing.rows, bytes=landing.bytes, uri=landing.uri,
                        now=datetime.now(UTC))
    logger.info(f"{execution.workflow}/{execution.partition_key}: landed {landing.rows} rows in {landing.files} "
                f"file(s) at {landing.uri}")
    return Landed(landing, request_id, land_attempt)
