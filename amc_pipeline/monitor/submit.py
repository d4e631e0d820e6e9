"""Submitting queued executions to AMC within the instance's limits, without ever duplicating one.

Why the care: AMC allows about 30 ad-hoc executions a day per instance, and a POST that timed out may
still have created an execution (AWS's reference solution retries it and pays twice). So a create is
marked as started in the store *before* the POST, and an attempt whose create outcome is unknown is
resolved by listing the instance's executions before any new POST.
"""

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from amc_pipeline.amc.client import AmcClient, execution_body
from amc_pipeline.amc.errors import FINAL_TYPES, AmbiguousCreateError, AmcError, ErrorType
from amc_pipeline.amc.models import AmcExecution, format_window_time
from amc_pipeline.config import InstanceConfig, PipelineConfig, WorkflowConfig
from amc_pipeline.monitor.events import PassReport
from amc_pipeline.monitor.packing import claim_for_submit, defer_pack, execution_window, plan_pack
from amc_pipeline.monitor.transitions import apply_observation, first_check_at, move
from amc_pipeline.partitions import Window, next_utc_day, utc_day_start, window_for
from amc_pipeline.store.records import Attempt, ExecutionView
from amc_pipeline.store.states import FAILED, PENDING, QUEUED, from_amc
from amc_pipeline.store.store import ExecutionStore

log = logging.getLogger(__name__)

#: How far before our own submit time an adopted AMC execution's createTime may lie (clock skew).
CLOCK_SKEW = timedelta(minutes=5)


def amc_workflow_id(workflow: WorkflowConfig, attempt: Attempt) -> str:
    """The workflowId sent to AMC: unique per attempt for ad hoc SQL, so a lost create is found exactly."""
    if workflow.is_ad_hoc:
        return f"{workflow.name}-{attempt.client_token}"
    assert workflow.workflow_id is not None
    return workflow.workflow_id


def build_body(
    workflow: WorkflowConfig, execution: ExecutionView, attempt: Attempt, window: Window | None = None
) -> dict:
    """The create body; `window` is a pack's first start to last end (default: the execution's own)."""
    window = window or window_for(workflow, execution.partition_key)
    return execution_body(
        workflow_id=amc_workflow_id(workflow, attempt),
        sql=workflow.sql,
        window_start=window.start_local,
        window_end=window.end_local,
        time_zone=window.timezone,
        timeout_seconds=workflow.max_runtime_minutes * 60,
        parameter_values=dict(workflow.parameter_values) or None,
        ignore_data_gaps=workflow.ignore_data_gaps,
    )


def submit_queued(
    store: ExecutionStore,
    client: AmcClient,
    config: PipelineConfig,
    *,
    now: datetime | None = None,
    report: PassReport | None = None,
    instances: Iterable[InstanceConfig] | None = None,
) -> PassReport:
    """Send due QUEUED attempts to AMC, oldest request first, while each instance has room."""
    now = now or datetime.now(UTC)
    report = report or PassReport()
    for instance in instances or config.instances:
        _submit_for_instance(store, client, config, instance, now, report)
    return report


def _submit_for_instance(
    store: ExecutionStore,
    client: AmcClient,
    config: PipelineConfig,
    instance: InstanceConfig,
    now: datetime,
    report: PassReport,
) -> None:
    active = store.active_count(instance.instance_id)
    used_today = store.submitted_since(instance.instance_id, utc_day_start(now))
    room = min(instance.max_active_executions - active, instance.daily_execution_quota - used_today)
    quota_left = instance.daily_execution_quota - used_today
    # Creates whose outcome is unknown come first: resolving one uses no new slot, and it must happen
    # before anything could POST the same window again.
    for execution, attempt in store.ambiguous_attempts(instance.instance_id, now=now):
        workflow = _workflow(config, execution.workflow)
        if workflow is not None:
            _resolve_ambiguous(store, client, config, instance, workflow, execution, attempt, now, report)
    for execution, attempt in store.queued_for_submit(instance.instance_id, now, limit=max(room, 0) + 500):
        workflow = _workflow(config, execution.workflow)
        if workflow is None:
            log.warning("execution %s names workflow %r, which is no longer configured; left queued",
                        execution.id, execution.workflow)
            continue
        if room <= 0:
            # Wait for a free slot (re-checked after the next poll) or for tomorrow's quota, so that an
            # instance at its limits does not make the sensor launch a run every tick.
            wake = next_utc_day(now) if quota_left <= 0 else now + timedelta(
                seconds=config.monitor.poll_initial_seconds)
            store.update_attempt(attempt.id, expect_status=QUEUED, next_check_at=wake)
            report.deferred += 1
            continue
        if _submit_one(store, client, config, instance, workflow, execution, attempt, now, report):
            room -= 1
            quota_left -= 1
    if used_today >= instance.daily_execution_quota:
        log.info("instance %s used its daily quota (%s); queued executions wait until %s UTC",
                 instance.instance_id, instance.daily_execution_quota, next_utc_day(now).isoformat())


def _workflow(config: PipelineConfig, name: str) -> WorkflowConfig | None:
    try:
        return config.workflow(name)
    except KeyError:
        return None


def _submit_one(
    store: ExecutionStore,
    client: AmcClient,
    config: PipelineConfig,
    instance: InstanceConfig,
    workflow: WorkflowConfig,
    execution: ExecutionView,
    attempt: Attempt,
    now: datetime,
    report: PassReport,
) -> bool:
    """Create one AMC execution. Returns True when a slot was used (created or possibly created)."""
    pack = plan_pack(store, workflow, execution, attempt, now)  # None: the workflow does not pack
    if pack is not None and (pack.skip or pack.wait_until is not None):
        if pack.wait_until is not None:
            report.deferred += defer_pack(store, pack)
        return False
    if not claim_for_submit(store, pack, attempt, now):
        return False  # another monitor run took it
    try:
        body = build_body(workflow, execution, attempt, pack.window if pack else None)
    except ValueError as exc:
        _fail_at_submit(store, execution, attempt, ErrorType.QUERY, str(exc), None, now, report)
        return False
    try:
        created = client.create_execution(instance, body)
    except AmbiguousCreateError as exc:
        log.warning("create for %s/%s is ambiguous (%s); resolving by listing",
                    workflow.name, execution.partition_key, exc)
        fresh = store.get_attempt(attempt.id)
        _resolve_ambiguous(store, client, config, instance, workflow, execution, fresh, now, report,
                           just_created=True)
        return True
    except AmcError as exc:
        if exc.error_type in FINAL_TYPES:
            _fail_at_submit(store, execution, attempt, exc.error_type, exc.details or str(exc),
                            exc.request_id, now, report)
            return False
        # Throttled, quota exhausted or AMC unavailable: nothing was created; try again later.
        wait = exc.retry_after or config.monitor.retry_base_seconds
        if exc.status_code == 429 and "quota" in (exc.details or "").lower():
            wait = max(wait, (next_utc_day(now) - now).total_seconds())
        store.update_attempt(
            attempt.id, expect_status=QUEUED, submit_started_at=None,
            next_check_at=now + timedelta(seconds=wait), last_error=exc.details or str(exc),
            error_type=exc.error_type.value,
        )
        report.deferred += 1
        report.errors += 1
        return False
    _adopt(store, config, execution, attempt, created, now, report)
    report.submitted += 1
    return True


def _fail_at_submit(store, execution, attempt, error_type, reason, request_id, now, report) -> None:
    change = move(store, execution, attempt, FAILED, now=now, error_type=error_type.value, failure_reason=reason,
                  last_error=reason, amc_request_id=request_id)
    if change is not None:
        report.submit_failed += 1
        report.changes.append(change)


def _adopt(store, config, execution, attempt, amc: AmcExecution, now, report) -> None:
    """Record that `attempt` is AMC execution `amc`, then apply the status AMC reported."""
    change = move(
        store, execution, attempt, PENDING, now=now,
        amc_execution_id=amc.execution_id, amc_request_id=amc.request_id, amc_status=amc.status,
        submitted_at=now, next_check_at=first_check_at(config.monitor, now), last_error=None,
        error_type=None,
    )
    if change is None:
        log.warning("attempt %s was no longer QUEUED when AMC execution %s was adopted",
                    attempt.id, amc.execution_id)
        return
    report.changes.append(change)
    if from_amc(amc.status) not in (None, PENDING):
        apply_observation(store, config, execution, store.get_attempt(attempt.id), amc, now, report)


def _resolve_ambiguous(
    store, client, config, instance, workflow, execution, attempt, now, report, *, just_created=False
) -> None:
    """Find the AMC execution a lost create may have made; adopt it, or allow a new create."""
    started = attempt.submit_started_at or now
    try:
        match = find_created_execution(store, client, instance, workflow, execution, attempt, started)
    except AmcError as exc:
        log.warning("cannot list executions to resolve an ambiguous create (%s); will retry", exc)
        store.update_attempt(attempt.id, expect_status=QUEUED,
                             next_check_at=now + timedelta(seconds=config.monitor.poll_initial_seconds))
        report.errors += 1
        return
    if match is not None:
        _adopt(store, config, execution, attempt, match, now, report)
        report.adopted += 1
        return
    age = (now - started).total_seconds()
    if just_created or age < config.monitor.ambiguous_grace_seconds:
        # Not listed yet: give AMC a moment before concluding that nothing was created.
        store.update_attempt(
            attempt.id, expect_status=QUEUED,
            next_check_at=now + timedelta(seconds=max(config.monitor.ambiguous_grace_seconds - age, 0)),
        )
        return
    log.info("no AMC execution matches the lost create of %s/%s; it will be created again",
             workflow.name, execution.partition_key)
    store.update_attempt(attempt.id, expect_status=QUEUED, submit_started_at=None, next_check_at=now)


def find_created_execution(
    store: ExecutionStore,
    client: AmcClient,
    instance: InstanceConfig,
    workflow: WorkflowConfig,
    execution: ExecutionView,
    attempt: Attempt,
    started: datetime,
) -> AmcExecution | None:
    """The AMC execution created by this attempt's create call, if AMC lists one."""
    workflow_id = amc_workflow_id(workflow, attempt)
    window = execution_window(store, workflow, execution, attempt)
    want_start = format_window_time(window.start_local)
    want_end = format_window_time(window.end_local)
    known = store.amc_ids_for(instance.instance_id)
    for candidate in client.list_executions(
        instance, workflow_id=workflow_id, min_creation_time=started - CLOCK_SKEW, include_cancelled=True
    ):
        if candidate.workflow_id != workflow_id or candidate.execution_id in known:
            continue
        if candidate.window_start_original and candidate.window_start_original[:19] != want_start:
            continue
        if candidate.window_end_original and candidate.window_end_original[:19] != want_end:
            continue
        if candidate.create_time and candidate.create_time < started - CLOCK_SKEW:
            continue
        return candidate
    return None
