"""Cancelling executions at AMC and in the store (the cancel job, forced re-runs, TIMEOUT enforcement).

AMC accepts a cancel only from PENDING or RUNNING; a 400 means it already reached a terminal state,
which the next poll will record. A QUEUED attempt was never sent, so it is cancelled in the store only.
"""

import logging
from collections.abc import Callable
from datetime import datetime

from amc_pipeline.amc.client import AmcClient, AsyncAmcClient
from amc_pipeline.amc.errors import AmcError
from amc_pipeline.config import InstanceConfig, PipelineConfig
from amc_pipeline.monitor.events import StatusChange
from amc_pipeline.monitor.packing import cancel_target
from amc_pipeline.monitor.transitions import move
from amc_pipeline.partitions import window_for
from amc_pipeline.store.records import Attempt, ExecutionView
from amc_pipeline.store.states import ACTIVE, CANCELLED, QUEUED
from amc_pipeline.store.store import ExecutionStore

log = logging.getLogger(__name__)

#: A request can still be cancelled: queued here, or holding a place at AMC.
IN_FLIGHT: frozenset[str] = ACTIVE | {QUEUED}


def _needs_amc_cancel(attempt: Attempt) -> bool:
    return attempt.status in ACTIVE and attempt.amc_execution_id is not None


def _record(
    store: ExecutionStore,
    execution: ExecutionView,
    attempt: Attempt,
    now: datetime,
    to_status: str,
    reason: str,
    amc_error: AmcError | None,
) -> StatusChange | None:
    if amc_error is not None and amc_error.status_code != 400:
        # AMC did not take the cancel and the execution may still be running: keep tracking it.
        log.warning("cancel of %s at AMC failed (%s); status left as %s",
                    attempt.amc_execution_id, amc_error, attempt.status)
        return None
    if amc_error is not None:
        log.info("AMC refused to cancel %s (%s): it already finished; the next poll records how",
                 attempt.amc_execution_id, amc_error.details)
        return None
    return move(store, execution, attempt, to_status, now=now, failure_reason=reason, next_check_at=None)


def cancel_attempt(
    store: ExecutionStore,
    client: AmcClient,
    instance: InstanceConfig,
    execution: ExecutionView,
    attempt: Attempt,
    now: datetime,
    *,
    to_status: str = CANCELLED,
    reason: str = "cancelled by request",
) -> StatusChange | None:
    error = None
    if _needs_amc_cancel(attempt):
        try:
            client.cancel_execution(instance, attempt.amc_execution_id)
        except AmcError as exc:
            error = exc
    return _record(store, execution, attempt, now, to_status, reason, error)


async def cancel_attempt_async(
    store: ExecutionStore,
    client: AsyncAmcClient,
    instance: InstanceConfig,
    execution: ExecutionView,
    attempt: Attempt,
    now: datetime,
    *,
    to_status: str = CANCELLED,
    reason: str = "cancelled by request",
) -> StatusChange | None:
    error = None
    if _needs_amc_cancel(attempt):
        try:
            await client.cancel_execution(instance, attempt.amc_execution_id)
        except AmcError as exc:
            error = exc
    return _record(store, execution, attempt, now, to_status, reason, error)


def cancel_superseded(
    store: ExecutionStore,
    client: Callable[[], AmcClient],
    instance: InstanceConfig,
    execution: ExecutionView,
    attempt: Attempt,
    now: datetime,
) -> StatusChange | None:
    """A forced re-run superseded `execution` while in flight: stop what only it needs.

    A window riding on a pack leaves it (CANCELLED in the store, its rows never landed) and the pack
    keeps running for the other windows; a pack's leader whose members still follow it keeps running
    too (its window lands from the new execution, the members from the pack); anything else is
    cancelled at AMC. `client` is called only when AMC must be asked.
    """
    reason = "superseded by a forced new execution"
    if attempt.is_pack_member:
        return move(store, execution, attempt, CANCELLED, now=now, failure_reason=f"{reason}; left its pack",
                    next_check_at=None)
    if attempt.is_pack_leader and any(m.status == attempt.status for _, m in store.pack_members(attempt.id)):
        log.info("%s/%s leads a pack still running for other windows; its AMC execution is kept",
                 execution.workflow, execution.partition_key)
        return None
    return cancel_attempt(store, client(), instance, execution, attempt, now, reason=reason)


def cancel_targets(
    store: ExecutionStore,
    config: PipelineConfig,
    *,
    workflow: str | None,
    partition_keys: list[str],
    execution_ids: list[int],
) -> tuple[list[ExecutionView], list[str]]:
    """The executions a cancel request names, and a note for each key that has none.

    Raises ValueError naming the field when the request is malformed (unknown workflow, a partition
    key outside the workflow's range, partition keys without a workflow).
    """
    targets: list[ExecutionView] = []
    notes: list[str] = []
    if workflow:
        try:
            wf = config.workflow(workflow)
        except KeyError:
            raise ValueError(f"workflow: unknown workflow {workflow!r}") from None
        for key in partition_keys:
            window_for(wf, key)  # raises a clear error for a key outside the range
            execution = store.get_live(wf.name, key)
            if execution is None:
                notes.append(f"{wf.name}/{key}: no execution to cancel")
            else:
                targets.append(execution)
    elif partition_keys:
        raise ValueError("partition_keys: give workflow too")
    targets += [store.get(i) for i in execution_ids]
    return targets, notes


def cancel_executions(
    store: ExecutionStore,
    client: AmcClient,
    config: PipelineConfig,
    targets: list[ExecutionView],
    *,
    reason: str,
    now: datetime,
) -> tuple[list[StatusChange], list[str]]:
    """Cancel each target still in flight (at AMC when it was submitted); notes for the others."""
    changes: list[StatusChange] = []
    notes: list[str] = []
    for execution in targets:
        attempt = execution.attempt
        if attempt is not None:  # a window riding on a pack: cancelling it cancels the pack (docs/packing.md)
            execution, attempt = cancel_target(store, execution, attempt)
        if attempt is None or attempt.status not in IN_FLIGHT:
            notes.append(f"{execution.workflow}/{execution.partition_key}: already "
                         f"{attempt.status if attempt else 'without attempt'}; nothing to cancel")
            continue
        change = cancel_attempt(store, client, config.instance(execution.instance_id), execution, attempt, now,
                                reason=reason)
        if change is not None:
            changes.append(change)
    return changes, notes
