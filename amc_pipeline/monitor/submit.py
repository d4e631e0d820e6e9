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
from amc_pipeline.amc.errors import FINAL_TYPES, AmbiguousCreateError, AmcAuthError, AmcError, ErrorType
from amc_pipeline.amc.models import AmcExecution, format_window_time
from amc_pipeline.config import AccountConfig, InstanceConfig, PipelineConfig, WorkflowConfig
from amc_pipeline.monitor.events import PassReport
from amc_pipeline.monitor.packing import claim_for_submit, defer_pack, execution_window, plan_pack
from amc_pipeline.monitor.parameters import parameter_values
from amc_pipeline.monitor.transitions import apply_observation, first_check_at, move
from amc_pipeline.partitions import Window, next_utc_day, utc_day_start, window_for
from amc_pipeline.store.records import Attempt, ExecutionView
from amc_pipeline.store.states import FAILED, PENDING, QUEUED, from_amc
from amc_pipeline.store.store import ExecutionStore

log = logging.getLogger(__name__)

#: How long a window of an AMC-scheduled workflow waits before the submit pass looks at it again.
SCHEDULED_WAIT = timedelta(days=1)
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
        sql=workflow.sql if workflow.is_ad_hoc else None,  # a saved workflow runs by its workflowId
        window_start=window.start_local,
        window_end=window.end_local,
        time_zone=window.timezone,
        timeout_seconds=workflow.max_runtime_minutes * 60,
        parameter_values=parameter_values(workflow, window) or None,
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
    """Send due QUEUED attempts to AMC, fairly, while each instance and its account have room.

    Per account: the instances' active and daily limits as before, plus the account's own
    `max_active_executions` across all its instances. Queued work is taken round-robin over
    (instance, workflow) by oldest request (`fair_order`), so one long backfill cannot hold every
    slot while another workflow's or instance's daily window waits.
    """
    now = now or datetime.now(UTC)
    report = report or PassReport()
    waiting = store.instances_with_submit_work(now)
    chosen = [i for i in (instances or config.instances) if i.instance_id in waiting]
    by_account: dict[str, list[InstanceConfig]] = {}
    for instance in chosen:
        by_account.setdefault(instance.account, []).append(instance)
    for account_name, group in by_account.items():
        report.accounts_seen.add(account_name)
        _submit_for_account(store, client, config, config.account(account_name), group, now, report)
    return report


def fair_order(candidates: list[tuple[InstanceConfig, ExecutionView, Attempt]]
               ) -> list[tuple[InstanceConfig, ExecutionView, Attempt]]:
    """Round-robin over (instance, workflow) by oldest request: every group's oldest window, then every
    group's second oldest, and so on; within a round, oldest request first."""
    rank: dict[tuple[str, str], int] = {}
    keyed = []
    for instance, execution, attempt in sorted(candidates, key=lambda c: (c[1].requested_at, c[1].id)):
        group = (instance.instance_id, execution.workflow)
        position = rank.get(group, 0)
        rank[group] = position + 1
        keyed.append(((position, execution.requested_at, execution.id), (instance, execution, attempt)))
    keyed.sort(key=lambda item: item[0])
    return [candidate for _, candidate in keyed]


def _submit_for_account(
    store: ExecutionStore,
    client: AmcClient,
    config: PipelineConfig,
    account: AccountConfig,
    group: list[InstanceConfig],
    now: datetime,
    report: PassReport,
) -> None:
    everyone = [i.instance_id for i in config.instances_of(account.name)]
    active = store.active_counts(everyone)
    account_room = account.max_active_executions - sum(active.values())
    room: dict[str, int] = {}
    quota_left: dict[str, int] = {}
    candidates: list[tuple[InstanceConfig, ExecutionView, Attempt]] = []
    for instance in group:
        iid = instance.instance_id
        used_today = store.submitted_since(iid, utc_day_start(now))
        quota_left[iid] = instance.daily_execution_quota - used_today
        room[iid] = min(instance.max_active_executions - active.get(iid, 0), quota_left[iid])
        # Creates whose outcome is unknown come first: resolving one uses no new slot, and it must
        # happen before anything could POST the same window again.
        for execution, attempt in store.ambiguous_attempts(iid, now=now):
            workflow = _workflow(config, execution.workflow)
            if workflow is not None:
                _resolve_ambiguous(store, client, config, instance, workflow, execution, attempt, now, report)
        candidates.extend((instance, execution, attempt)
                          for execution, attempt in store.queued_for_submit(iid, now, limit=max(room[iid], 0) + 500))
        if quota_left[iid] <= 0:
            log.info("instance %s used its daily quota (%s); queued executions wait until %s UTC",
                     iid, instance.daily_execution_quota, next_utc_day(now).isoformat())
    refused: AmcAuthError | None = None
    for instance, execution, attempt in fair_order(candidates):
        iid = instance.instance_id
        workflow = _workflow(config, execution.workflow)
        if workflow is None:
            log.warning("execution %s names workflow %r, which is no longer configured; left queued",
                        execution.id, execution.workflow)
            continue
        if refused is not None:
            _defer_refused(store, config, attempt, refused, now, report)
            continue
        if room[iid] <= 0 or account_room <= 0:
            # Wait for a free slot (re-checked after the next poll) or for tomorrow's quota, so that an
            # instance at its limits does not make the sensor launch a run every tick.
            wake = next_utc_day(now) if quota_left[iid] <= 0 else now + timedelta(
                seconds=config.monitor.poll_initial_seconds)
            store.update_attempt(attempt.id, expect_status=QUEUED, next_check_at=wake)
            report.deferred += 1
            continue
        try:
            used = _submit_one(store, client, config, instance, workflow, execution, attempt, now, report)
        except AmcAuthError as exc:
            # Login with Amazon refused this account's credentials: nothing was created. Its windows
            # wait (they are not the query's fault) and the run says which account; other accounts
            # carry on. The token cache remembers the refusal, so this costs one token request.
            refused = exc
            report.refused_accounts[account.name] = str(exc)
            log.error("account %s: %s; its queued executions wait", account.name, exc)
            _defer_refused(store, config, attempt, exc, now, report)
            continue
        if used:
            room[iid] -= 1
            quota_left[iid] -= 1
            account_room -= 1
    if account_room <= 0:
        log.info("account %s has %s executions active, its limit; queued executions wait",
                 account.name, account.max_active_executions)


def _defer_refused(store: ExecutionStore, config: PipelineConfig, attempt: Attempt, exc: AmcAuthError,
                   now: datetime, report: PassReport) -> None:
    store.update_attempt(attempt.id, expect_status=QUEUED, submit_started_at=None,
                         next_check_at=now + timedelta(seconds=config.monitor.retry_max_seconds),
                         last_error=exc.details or str(exc), error_type=exc.error_type.value)
    report.deferred += 1
    report.errors += 1


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
    if workflow.amc_schedule is not None and attempt.retry_count == 0:
        # AMC's schedule runs this workflow's windows: the adoption pass (monitor/adopt.py, launched by
        # amc_adoption_sensor) attaches the execution it starts to this attempt; creating one here would
        # spend ad hoc quota twice. Nothing is due meanwhile, so the monitor sensor stays quiet.
        # (A retry of a failed scheduled run is ours, like any retry: it is submitted below.)
        store.update_attempt(attempt.id, expect_status=QUEUED, next_check_at=now + SCHEDULED_WAIT)
        report.deferred += 1
        return False
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
    except AmcAuthError:
        store.update_attempt(attempt.id, expect_status=QUEUED, submit_started_at=None)
        raise
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
