"""Checking the status of active executions, per instance: bounded async concurrency, list pages.

Why per instance: one list request answers up to 100 statuses, so a status check costs per instance,
not per execution. When any active execution of an instance is due, the pass checks every active
execution of that instance (list pages from `list_threshold` of them, else GETs), and each one's next
check comes from `RunTimePlan` (what the store knows of its workflow's past run times); the instance's
next pass is the earliest of those. List pages are sequential within one creation-time range
(`nextToken`), so with many executions they are split into `concurrency` slices by creation time and
the slices are paged in parallel.
"""

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from amc_pipeline.amc.client import AsyncAmcClient
from amc_pipeline.amc.errors import AmcAuthError, AmcError, ErrorType
from amc_pipeline.amc.models import AmcExecution
from amc_pipeline.config import PipelineConfig
from amc_pipeline.monitor.cancel import cancel_attempt_async
from amc_pipeline.monitor.events import PassReport
from amc_pipeline.monitor.transitions import CheckPlan, RunTimePlan, apply_observation, record_error
from amc_pipeline.store.states import TIMEOUT, from_amc
from amc_pipeline.store.store import DueCheck, ExecutionStore

log = logging.getLogger(__name__)

#: Errors that say "AMC or the network is down", not "this execution is broken".
OUTAGE_TYPES = frozenset({ErrorType.NETWORK, ErrorType.TIMEOUT, ErrorType.RESOURCE, ErrorType.AUTHENTICATION})
LIST_SLACK = timedelta(minutes=10)
#: Executions per list page (AMC's maximum).
PAGE_SIZE = 100


class PollStrategy:
    """Which executions a pass checks and how their next checks are planned (this project's policy).

    Stateless; `poll_due(strategy=...)` takes another (benchmarks/monitor_day.py replays the previous
    policy with one).
    """

    def instances_due(self, store: ExecutionStore, now: datetime) -> list[str]:
        return store.due_instances(now)

    def checks(self, store: ExecutionStore, instance_ids: list[str], now: datetime) -> dict[str, list[DueCheck]]:
        """Every active execution of each instance (checking one more costs nothing on a list page),
        read in one query for all of them."""
        wanted = set(instance_ids)
        out: dict[str, list[DueCheck]] = {i: [] for i in instance_ids}
        for check in store.due_checks(every_active=True):
            if check.instance_id in wanted:
                out[check.instance_id].append(check)
        return out

    def plans(self, store: ExecutionStore, config: PipelineConfig, instance_ids: list[str]) -> dict[str, CheckPlan]:
        """Each instance's plan from its workflows' past run times (one history query for all)."""
        history = store.run_times_for(instance_ids, config.monitor.poll_history_runs)
        return {i: RunTimePlan(config.monitor, history.get(i, {})) for i in instance_ids}

    def use_list(self, config: PipelineConfig, count: int) -> bool:
        return count >= config.monitor.list_threshold


DEFAULT_STRATEGY = PollStrategy()


def poll_due(
    store: ExecutionStore,
    client_factory: Callable[[], AsyncAmcClient],
    config: PipelineConfig,
    *,
    now: datetime | None = None,
    report: PassReport | None = None,
    strategy: PollStrategy = DEFAULT_STRATEGY,
) -> PassReport:
    """One poll pass over every instance with a PENDING/RUNNING attempt due (sync entry point for ops).

    Takes a factory because an asyncio client belongs to the event loop it was opened in.
    """

    async def run() -> PassReport:
        async with client_factory() as client:
            return await poll_due_async(store, client, config, now=now, report=report, strategy=strategy)

    return asyncio.run(run())


async def poll_due_async(
    store: ExecutionStore,
    client: AsyncAmcClient,
    config: PipelineConfig,
    *,
    now: datetime | None = None,
    report: PassReport | None = None,
    strategy: PollStrategy = DEFAULT_STRATEGY,
) -> PassReport:
    now = now or datetime.now(UTC)
    report = report or PassReport()
    # Instances are checked concurrently (at most `concurrency` at once; the client bounds requests in
    # flight too): with 150 instances a pass is as long as its slowest instances, not their sum. Their
    # "nothing changed" rows share one writer, so SQLite sees one batch writer for the pass.
    slots = asyncio.Semaphore(config.monitor.concurrency)
    quiet = _QuietWriter(store, now)
    due = strategy.instances_due(store, now)
    # Light rows: full (execution, attempt) pairs are loaded only for the few attempts that change.
    checks = strategy.checks(store, due, now)
    plans = strategy.plans(store, config, due)

    async def one(instance_id: str) -> None:
        async with slots:
            items = checks[instance_id]
            try:
                instance = config.instance(instance_id)
            except KeyError:
                log.warning("%d active executions belong to unconfigured instance %s; skipped", len(items),
                            instance_id)
                return
            report.accounts_seen.add(instance.account)
            items = await _enforce_timeouts(store, client, config, items, now, report)
            await _poll_instance(store, client, config, instance, items, now, report, plans[instance_id],
                                 strategy.use_list(config, len(items)), quiet)

    try:
        await asyncio.gather(*(one(i) for i in due))
    finally:
        await quiet.close()
    return report


class _QuietWriter:
    """Writes "checked, nothing changed" rows in batches on a worker thread while requests are in flight.

    Why: with thousands of due executions, one store transaction per unchanged execution dominated the
    pass; batched (store.record_checks) and overlapped with the waits for AMC's answers it costs little.
    One batch at a time, so SQLite never sees two writers from this pass.
    """

    BATCH = 500

    def __init__(self, store: ExecutionStore, now: datetime) -> None:
        self.store = store
        self.now = now
        self.pending: list[tuple[int, str, datetime | None]] = []
        self.task: asyncio.Task | None = None

    def add(self, attempt_id: int, status: str, next_at: datetime | None) -> None:
        self.pending.append((attempt_id, status, next_at))
        if len(self.pending) >= self.BATCH and (self.task is None or self.task.done()):
            self._start()

    def _start(self) -> None:
        if self.task is not None and self.task.done():
            self.task.result()  # surface a failed batch
        batch, self.pending = self.pending, []
        self.task = asyncio.create_task(asyncio.to_thread(self.store.record_checks, batch, now=self.now))

    async def flush(self) -> None:
        """Start a batch of what is pending if no batch is being written (the pass closes at its end)."""
        if self.pending and (self.task is None or self.task.done()):
            self._start()

    async def close(self) -> None:
        if self.task is not None:
            await self.task
            self.task = None
        if self.pending:
            batch, self.pending = self.pending, []
            await asyncio.to_thread(self.store.record_checks, batch, now=self.now)


async def _poll_instance(store, client, config, instance, items: list[DueCheck], now, report,
                         plan: CheckPlan, use_list: bool, quiet: _QuietWriter) -> None:
    if not items:
        return
    policy = config.monitor
    by_amc = {i.amc_execution_id: i for i in items}
    by_attempt_status = {i.attempt_id: i.status for i in items}
    observed: dict[str, AmcExecution] = {}
    errors: dict[str, AmcError] = {}
    changed: list[DueCheck] = []

    def seen(amc: AmcExecution) -> None:
        """Called as each status arrives: unchanged ones are queued for the batch write at once."""
        item = by_amc.get(amc.execution_id)
        if item is None or amc.execution_id in observed:
            return  # not ours (another client's execution, or not due), or already seen
        observed[amc.execution_id] = amc
        if _unchanged(item, amc):
            report.checked += 1
            quiet.add(item.attempt_id, item.status, plan.next_check(item.workflow, item, now))
        else:
            changed.append(item)

    try:
        if use_list:
            await _list_statuses(client, instance, items, policy.concurrency, report, seen)
        missing = [i for i in items if i.amc_execution_id not in observed]
        if missing:
            got, errors = await _get_statuses(client, instance, missing, policy.concurrency, report)
            for amc in got.values():
                seen(amc)
        outage = bool(errors) and not observed and all(
            e.error_type in OUTAGE_TYPES or (e.status_code or 0) >= 500 for e in errors.values())
        refused = next((e for e in errors.values() if isinstance(e, AmcAuthError)), None)
        if refused is not None:
            # Login with Amazon refused the account's credentials: its instances cannot be seen, the
            # executions keep running at AMC; the run says which account (defs/monitor.py).
            report.refused_accounts[instance.account] = str(refused)
        if outage:
            report.outage = True
            log.warning("AMC unreachable for instance %s (%s); no execution is failed for it; polling resumes",
                        instance.instance_id, next(iter(errors.values())))
        failing: list[tuple[DueCheck, AmcError]] = []
        for item in items:
            err = errors.get(item.amc_execution_id)
            if err is None or item.amc_execution_id in observed:
                continue
            if outage:
                # AMC is down for the whole instance: look again soon (one request), so its recovery
                # and whatever finished meanwhile are seen within poll_initial_seconds.
                quiet.add(item.attempt_id, item.status, now + timedelta(seconds=policy.poll_initial_seconds))
                report.errors += 1
            elif err.error_type in OUTAGE_TYPES or (err.status_code or 0) >= 500:
                quiet.add(item.attempt_id, item.status, plan.next_check(item.workflow, item, now))
                report.errors += 1
            else:
                failing.append((item, err))
    finally:
        await quiet.flush()

    # Changes and per-execution errors go through the state machine one by one, on full rows.
    # An attempt whose status moved since it was read (another monitor run) is that run's to record.
    pairs = store.attempt_pairs([i.attempt_id for i in changed] + [i.attempt_id for i, _ in failing])
    current = {k: v for k, v in pairs.items() if v[1].status == by_attempt_status.get(k)}
    for item in changed:
        if item.attempt_id in current:
            execution, attempt = current[item.attempt_id]
            apply_observation(store, config, execution, attempt, observed[item.amc_execution_id], now, report,
                              plan)
    for item, err in failing:
        if item.attempt_id in current:
            execution, attempt = current[item.attempt_id]
            record_error(store, config, execution, attempt, _describe(err), err.error_type, now, report, plan)


def _unchanged(item: DueCheck, amc: AmcExecution) -> bool:
    """AMC reports the status the store already has (same raw status too): only the next check moves.

    Mirrors the no-change branch of `apply_observation`, which handles every other case.
    """
    ours = from_amc(amc.status)
    return ours is not None and ours == item.status and amc.status == item.amc_status


def _describe(err: AmcError) -> str:
    text = err.details or str(err)
    return f"HTTP {err.status_code}: {text}" if err.status_code else text


async def _get_statuses(client, instance, items, concurrency, report):
    sem = asyncio.Semaphore(concurrency)
    observed: dict[str, AmcExecution] = {}
    errors: dict[str, AmcError] = {}

    async def one(item: DueCheck) -> None:
        amc_id = item.amc_execution_id
        async with sem:
            report.get_requests += 1
            try:
                observed[amc_id] = await client.get_execution(instance, amc_id)
            except AmcError as exc:
                errors[amc_id] = exc

    await asyncio.gather(*(one(i) for i in items))
    return observed, errors


async def _list_statuses(client, instance, items: list[DueCheck], concurrency, report,
                         seen: Callable[[AmcExecution], None]) -> None:
    """Statuses of `items` from list pages, creation-time slices paged in parallel; each record is
    handed to `seen` as its page arrives (records that are not ours are `seen`'s to ignore)."""
    bounds = _slices([i.submitted_at or i.created_at for i in items], concurrency)
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
                seen(record)
            if not token:
                return

    await asyncio.gather(*(page_through(lo, hi) for lo, hi in bounds))


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


async def _enforce_timeouts(store, client, config, items: list[DueCheck], now, report) -> list[DueCheck]:
    """Cancel executions running past their workflow's limit (freeing the AMC slot) and mark them
    TIMEOUT; returns the items still to be polled."""
    remaining = []
    for item in items:
        try:
            workflow = config.workflow(item.workflow)
        except KeyError:
            remaining.append(item)
            continue
        started = item.submitted_at
        if started is None or now - started <= timedelta(minutes=workflow.max_runtime_minutes):
            remaining.append(item)
            continue
        pair = store.attempt_pairs([item.attempt_id]).get(item.attempt_id)
        if pair is None:
            continue
        execution, attempt = pair
        reason = f"ran longer than max_runtime_minutes={workflow.max_runtime_minutes}"
        change = await cancel_attempt_async(
            store, client, config.instance(execution.instance_id), execution, attempt, now,
            to_status=TIMEOUT, reason=reason,
        )
        if change is not None:
            report.timed_out += 1
            report.changes.append(change)
    return remaining


__all__ = ["DEFAULT_STRATEGY", "PollStrategy", "poll_due", "poll_due_async"]
