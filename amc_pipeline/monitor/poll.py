"""Checking the status of due executions: bounded async concurrency, list pages when many are due.

Why list pages: one list request answers up to 100 statuses, so with thousands of active executions on
one instance a poll pass costs about n/100 requests instead of n. List pages are sequential within one
creation-time range (`nextToken`), so the due executions are split into `concurrency` slices by
creation time and the slices are paged in parallel.
"""

import asyncio
import logging
from collections import Counter, defaultdict
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
#: Executions per list page (AMC's maximum).
PAGE_SIZE = 100


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
    # Unchanged statuses (almost all of them in a big pass) and outage errors only reschedule the next
    # check: they are written together in one transaction (store.record_checks) instead of one each.
    quiet: list[tuple[int, str, datetime | None]] = []
    for item in items:
        amc_id = item.attempt.amc_execution_id
        if amc_id in observed:
            amc = observed[amc_id]
            if _unchanged(item.attempt, amc):
                report.checked += 1
                quiet.append((item.attempt.id, item.attempt.status, next_check_at(policy, item.attempt, now)))
            else:
                apply_observation(store, config, item.execution, item.attempt, amc, now, report)
        elif amc_id in errors:
            err = errors[amc_id]
            if outage or err.error_type in OUTAGE_TYPES or (err.status_code or 0) >= 500:
                quiet.append((item.attempt.id, item.attempt.status, next_check_at(policy, item.attempt, now)))
                report.errors += 1
            else:
                record_error(store, config, item.execution, item.attempt, _describe(err), err.error_type,
                             now, report)
    store.record_checks(quiet, now=now)


def _unchanged(attempt: Attempt, amc: AmcExecution) -> bool:
    """AMC reports the status the store already has (same raw status too): only the next check moves.

    Mirrors the no-change branch of `apply_observation`, which handles every other case.
    """
    return amc.lifecycle_status is not None and amc.lifecycle_status == attempt.status \
        and amc.status == attempt.amc_status


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
    bounds = _slices([i.attempt.submitted_at or i.attempt.created_at for i in items], concurrency)
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
                        sort_ascending=True, limit=PAGE_SIZE, next_token=token,
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


def _slices(times: list[datetime], concurrency: int) -> list[tuple[datetime, datetime | None]]:
    """Creation-time ranges (min, max inclusive; None = open) that together cover every due execution.

    AMC compares creation times in whole seconds, so the ranges are cut between seconds: adjacent
    ranges never share a second (a shared second would be listed twice, and when many executions were
    created in the same second every slice would page through all of them). Each range holds about
    `ceil(pages / slices)` full pages of our executions, so a slice's pages are full and the slices
    finish together. Ranges are contiguous (max = next min - 1 s), so an execution whose AMC
    createTime is a little before our submitted_at is still in some range; the first range opens
    LIST_SLACK earlier for the same reason.
    """
    per_second = Counter(t.replace(microsecond=0) for t in times)
    pages = -(-len(times) // PAGE_SIZE)
    slices = max(1, min(concurrency, pages))
    capacity = -(-pages // slices) * PAGE_SIZE
    starts: list[datetime] = []
    filled = 0
    for second in sorted(per_second):
        count = per_second[second]
        if not starts or filled + count > capacity:
            starts.append(second)
            filled = 0
        filled += count
    bounds: list[tuple[datetime, datetime | None]] = []
    for index, start in enumerate(starts):
        lo = start - LIST_SLACK if index == 0 else start
        hi = starts[index + 1] - timedelta(seconds=1) if index + 1 < len(starts) else None
        bounds.append((lo, hi))
    return bounds


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
