"""Checking the status of due executions: bounded async concurrency, list pages when many are due.

Why list pages: one list request answers up to 100 statuses, so with thousands of active executions on
one instance a poll pass costs about n/100 requests instead of n. List pages are sequential within one
creation-time range (`nextToken`), so the due executions are split into `concurrency` slices by
creation time and the slices are paged in parallel.
"""

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from amc_pipeline.amc.client import AsyncAmcClient
from amc_pipeline.amc.errors import AmcError, ErrorType
from amc_pipeline.amc.models import AmcExecution
from amc_pipeline.config import PipelineConfig
from amc_pipeline.monitor.cancel import cancel_attempt_async
from amc_pipeline.monitor.events import PassReport
from amc_pipeline.monitor.transitions import apply_observation, next_check_at, record_error
from amc_pipeline.store.records import Attempt, ExecutionView
from amc_pipeline.store.store import ExecutionStore

log = logging.getLogger(__name__)

#: Errors that say "AMC or the network is down", not "this execution is broken".
OUTAGE_TYPES = frozenset({ErrorType.NETWORK, ErrorType.TIMEOUT, ErrorType.RESOURCE, ErrorType.AUTHENTICATION})
LIST_SLACK = timedelta(minutes=10)


@dataclass
class _Due:
    execution: ExecutionView
    attempt: Attempt


def poll_due(
    store: ExecutionStore,
    client_factory: Callable[[], AsyncAmcClient],
    config: PipelineConfig,
    *,
    now: datetime | None = None,
    report: PassReport | None = None,
) -> PassReport:
    """One poll pass over every due PENDING/RUNNING attempt (sync entry point for ops).

    Takes a factory because an asyncio client belongs to the event loop it was opened in.
    """

    async def run() -> PassReport:
        async with client_factory() as client:
            return await poll_due_async(store, client, config, now=now, report=report)

    return asyncio.run(run())


async def poll_due_async(
    store: ExecutionStore,
    client: AsyncAmcClient,
    config: PipelineConfig,
    *,
    now: datetime | None = None,
    report: PassReport | None = None,
) -> PassReport:
    now = now or datetime.now(UTC)
    report = report or PassReport()
    due = [_Due(e, a) for e, a in store.due_for_poll(now)]
    by_instance: dict[str, list[_Due]] = defaultdict(list)
    for item in due:
        by_instance[item.execution.instance_id].append(item)
    for instance_id, items in by_instance.items():
        try:
            instance = config.instance(instance_id)
        except KeyError:
            log.warning("%d due executions belong to unconfigured instance %s; skipped", len(items), instance_id)
            continue
        items = await _enforce_timeouts(store, client, config, items, now, report)
        await _poll_instance(store, client, config, instance, items, now, report)
    return report


async def _poll_instance(store, client, config, instance, items, now, report) -> None:
    if not items:
        return
    policy = config.monitor
    observed: dict[str, AmcExecution] = {}
    errors: dict[str, AmcError] = {}
    if len(items) >= policy.list_threshold:
        observed = await _list_statuses(client, instance, items, policy.concurrency, report)
    missing = [i for i in items if i.attempt.amc_execution_id not in observed]
    if missing:
        got, errors = await _get_statuses(client, instance, missing, policy.concurrency, report)
        observed.update(got)

    outage = bool(errors) and not observed and all(e.error_type in OUTAGE_TYPES or (e.status_code or 0) >= 500
                                                   for e in errors.values())
    if outage:
        report.outage = True
        log.warning("AMC unreachable for instance %s (%s); no execution is failed for it; polling resumes",
                    instance.instance_id, next(iter(errors.values())))
    for item in items:
        amc_id = item.attempt.amc_execution_id
        if amc_id in observed:
            apply_observation(store, config, item.execution, item.attempt, observed[amc_id], now, report)
        elif amc_id in errors:
            err = errors[amc_id]
            if outage or err.error_type in OUTAGE_TYPES or (err.status_code or 0) >= 500:
                store.record_check(item.attempt.id, now=now,
                                   next_check_at=next_check_at(policy, item.attempt, now))
                report.errors += 1
            else:
                record_error(store, config, item.execution, item.attempt, _describe(err), err.error_type,
                             now, report)


def _describe(err: AmcError) -> str:
    text = err.details or str(err)
    return f"HTTP {err.status_code}: {text}" if err.status_code else text


async def _get_statuses(client, instance, items, concurrency, report):
    sem = asyncio.Semaphore(concurrency)
    observed: dict[str, AmcExecution] = {}
    errors: dict[str, AmcError] = {}

    async def one(item: _Due) -> None:
        amc_id = item.attempt.amc_execution_id
        async with sem:
            report.get_requests += 1
            try:
                observed[amc_id] = await client.get_execution(instance, amc_id)
            except AmcError as exc:
                errors[amc_id] = exc

    await asyncio.gather(*(one(i) for i in items))
    return observed, errors


async def _list_statuses(client, instance, items, concurrency, report) -> dict[str, AmcExecution]:
    """Statuses of `items` from list pages, creation-time slices paged in parallel."""
    wanted = {i.attempt.amc_execution_id for i in items}
    times = sorted((i.attempt.submitted_at or i.attempt.created_at) for i in items)
    slices = max(1, min(concurrency, len(times) // 100 + 1))
    per = -(-len(times) // slices)
    bounds: list[tuple[datetime, datetime | None]] = []
    for s in range(slices):
        chunk = times[s * per:(s + 1) * per]
        if not chunk:
            continue
        lo = chunk[0] - LIST_SLACK if s == 0 else chunk[0]
        hi = times[(s + 1) * per] if (s + 1) * per < len(times) else None
        bounds.append((lo, hi))
    observed: dict[str, AmcExecution] = {}
    sem = asyncio.Semaphore(concurrency)

    async def page_through(lo: datetime, hi: datetime | None) -> None:
        token = None
        while True:
            async with sem:
                report.list_requests += 1
                try:
                    page, token = await client.list_executions_page(
                        instance, min_creation_time=lo, max_creation_time=hi, include_cancelled=True,
                        sort_ascending=True, limit=100, next_token=token,
                    )
                except AmcError as exc:
                    log.warning("list page failed (%s); falling back to single gets", exc)
                    return
            for record in page:
                if record.execution_id in wanted:
                    observed[record.execution_id] = record
            if not token:
                return

    await asyncio.gather(*(page_through(lo, hi) for lo, hi in bounds))
    return observed


async def _enforce_timeouts(store, client, config, items: list[_Due], now, report) -> list[_Due]:
    """Cancel executions running past their workflow's limit (freeing the AMC slot) and mark them
    TIMEOUT; returns the items still to be polled."""
    remaining = []
    for item in items:
        try:
            workflow = config.workflow(item.execution.workflow)
        except KeyError:
            remaining.append(item)
            continue
        started = item.attempt.submitted_at
        if started is None or now - started <= timedelta(minutes=workflow.max_runtime_minutes):
            remaining.append(item)
            continue
        reason = f"ran longer than max_runtime_minutes={workflow.max_runtime_minutes}"
        change = await cancel_attempt_async(
            store, client, config.instance(item.execution.instance_id), item.execution, item.attempt, now,
            to_status="TIMEOUT", reason=reason,
        )
        if change is not None:
            report.timed_out += 1
            report.changes.append(change)
    return remaining


__all__ = ["poll_due", "poll_due_async"]
