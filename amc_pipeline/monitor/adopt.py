"""Adopting AMC executions this pipeline did not create: an AMC schedule's runs, and ones started elsewhere.

Why: a team's saved workflow may run on an AMC schedule (no ad hoc quota) or be started from the AMC
console. Without adoption those executions are invisible here, and the window would be run a second
time. The monitor lists each adopting workflow's executions by `workflowId`, maps each one's time
window to the partition with exactly that window (`partitions.partition_for_window`), and attaches
it to the window's execution in the store, which then polls and lands it like its own.

Rules:
- Never a second execution for a window: an execution is attached only to a window whose current
  attempt is QUEUED with no create started (compare-and-set in `ExecutionStore.adopt_attempt`), or
  whose last execution ended without success. A window already in flight or succeeded keeps its own.
- A window that matches no partition (other bounds, another zone, before `start_date`) is refused
  with a warning, never landed. One held back by `data_lag_days` waits until Dagster offers it.
- The origin is recorded (`schedule` or `external`); scheduled runs do not count against the quota.
"""

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from amc_pipeline.amc.client import AmcClient
from amc_pipeline.amc.errors import AmcError
from amc_pipeline.amc.models import AmcExecution
from amc_pipeline.config import PipelineConfig, WorkflowConfig
from amc_pipeline.monitor.events import PassReport, StatusChange
from amc_pipeline.monitor.transitions import apply_observation, first_check_at
from amc_pipeline.partitions import is_current_partition, partition_for_window, window_for
from amc_pipeline.store.records import ExecutionView
from amc_pipeline.store.states import (
    CANCELLED,
    ORIGIN_EXTERNAL,
    ORIGIN_SCHEDULE,
    PENDING,
    QUEUED,
    SUCCESS,
    TERMINAL,
    from_amc,
)
from amc_pipeline.store.store import ExecutionStore

log = logging.getLogger(__name__)

#: How far back (by creation time) each pass lists a workflow's executions: passes run minutes apart,
#: so this only matters after the monitor was down; two weeks covers a long outage and weekly runs.
LOOKBACK = timedelta(days=14)
#: AMC's executionCategory of a schedule's run (recorded live responses show AD_HOC for our own).
SCHEDULED_CATEGORY = "SCHEDULED"


@dataclass
class AdoptionReport(PassReport):
    """A pass's figures plus what was not adopted and why (the op logs `refused` as warnings)."""

    refused: list[str] = field(default_factory=list)  # windows that match no partition
    in_flight: int = 0  # the window already had an execution of its own: not adopted
    waiting: int = 0  # the window is held back by data_lag_days: adopted on a later pass


def adopt_executions(
    store: ExecutionStore, client: AmcClient, config: PipelineConfig, *, now: datetime | None = None,
    report: AdoptionReport | None = None,
) -> AdoptionReport:
    """One adoption pass over every workflow with `amc_schedule` or `adopt_external`."""
    now = now or datetime.now(UTC)
    report = report or AdoptionReport()
    for workflow in config.workflows:
        if not workflow.adopts or workflow.workflow_id is None:
            continue
        for instance_id in workflow.instance_ids:  # a saved workflow lives in each instance it runs on
            instance = config.instance(instance_id)
            try:
                found = list(client.list_executions(instance, workflow_id=workflow.workflow_id,
                                                    min_creation_time=now - LOOKBACK, include_cancelled=False))
            except AmcError as exc:
                log.warning("%s: cannot list executions of %s on %s to adopt them (%s); next pass retries",
                            workflow.name, workflow.workflow_id, instance_id, exc)
                report.errors += 1
                continue
            for amc in found:
                if amc.workflow_id == workflow.workflow_id and store.get_by_amc_id(amc.execution_id) is None:
                    _consider(store, config, workflow, amc, now, report, instance_id)
    return report


def origin_of(workflow: WorkflowConfig, amc: AmcExecution) -> str | None:
    """`schedule`, `external`, or None when this workflow does not adopt such an execution."""
    category = amc.raw.get("executionCategory")
    scheduled = category == SCHEDULED_CATEGORY or (category is None and workflow.amc_schedule is not None)
    if scheduled:
        return ORIGIN_SCHEDULE if workflow.amc_schedule is not None or workflow.adopt_external else None
    return ORIGIN_EXTERNAL if workflow.adopt_external else None


def amc_window(amc: AmcExecution) -> tuple[datetime, datetime] | None:
    """The execution's window as aware datetimes (AMC echoes the wall times it was given, and the zone)."""
    if not amc.window_start_original or not amc.window_end_original:
        return None
    try:
        zone = ZoneInfo(amc.window_time_zone or "UTC")
        start = datetime.fromisoformat(amc.window_start_original[:19]).replace(tzinfo=zone)
        end = datetime.fromisoformat(amc.window_end_original[:19]).replace(tzinfo=zone)
    except (ValueError, ZoneInfoNotFoundError):
        return None
    return start, end


def _consider(store: ExecutionStore, config: PipelineConfig, workflow: WorkflowConfig, amc: AmcExecution,
              now: datetime, report: AdoptionReport, instance_id: str) -> None:
    origin = origin_of(workflow, amc)
    if origin is None or from_amc(amc.status) == CANCELLED:
        return
    window = amc_window(amc)
    key = partition_for_window(workflow, *window, instance_id) if window is not None else None
    if key is None:
        what = f"{amc.window_start_original}..{amc.window_end_original} {amc.window_time_zone or 'UTC'}"
        message = (f"{workflow.name}: AMC execution {amc.execution_id} ({origin}) covers {what}, which is no "
                   f"{workflow.partitions} partition of the workflow; not adopted, not landed")
        log.warning(message)
        report.refused.append(message)
        return
    if not is_current_partition(workflow, key):
        report.waiting += 1  # held back by data_lag_days (or past end_date): a later pass adopts it
        return
    _adopt_into(store, config, workflow, key, amc, origin, now, report)


def _adopt_into(store: ExecutionStore, config: PipelineConfig, workflow: WorkflowConfig, key: str,
                amc: AmcExecution, origin: str, now: datetime, report: AdoptionReport) -> None:
    window = window_for(workflow, key)
    execution = store.get_live(workflow.name, key)
    if execution is None:
        execution, _ = store.enqueue(workflow=workflow.name, instance_id=window.instance_id, partition_key=key,
                                     window_start=window.start_utc, window_end=window.end_utc, now=now)
    elif execution.status in TERMINAL - {SUCCESS}:
        # The window's own execution ended for good without a result: this one replaces it.
        execution = store.enqueue_forced(workflow=workflow.name, instance_id=window.instance_id,
                                         partition_key=key, window_start=window.start_utc,
                                         window_end=window.end_utc, now=now).execution
    attempt = execution.attempt
    if attempt is None or attempt.status != QUEUED or attempt.submit_started_at is not None:
        log.info("%s/%s already has execution %s (%s); AMC execution %s (%s) is not adopted",
                 workflow.name, key, attempt.amc_execution_id if attempt else None,
                 attempt.status if attempt else None, amc.execution_id, origin)
        report.in_flight += 1
        return
    if not store.adopt_attempt(
        attempt.id, now=now, origin=origin, amc_execution_id=amc.execution_id, amc_request_id=amc.request_id,
        amc_status=amc.status, submitted_at=amc.create_time or now, next_check_at=first_check_at(config.monitor, now),
        last_error=None, error_type=None,
    ):
        report.in_flight += 1  # a monitor run began a create for it first: that one is the window's
        return
    report.adopted += 1
    report.changes.append(_change(execution, attempt.attempt, amc, origin))
    log.info("%s/%s: adopted AMC execution %s (%s, %s)", workflow.name, key, amc.execution_id, origin, amc.status)
    if from_amc(amc.status) not in (None, PENDING):
        apply_observation(store, config, execution, store.get_attempt(attempt.id), amc, now, report)


def _change(execution: ExecutionView, attempt: int, amc: AmcExecution, origin: str) -> StatusChange:
    return StatusChange(
        workflow=execution.workflow, partition_key=execution.partition_key, execution_id=execution.id,
        attempt=attempt, from_status=QUEUED, to_status=PENDING, amc_execution_id=amc.execution_id,
        extra={"amc/origin": origin},
    )
