"""Packing contiguous queued windows into one AMC execution (docs/packing.md).

Why: AMC allows about 30 ad hoc executions a day per instance, and most reports already group by a
date column, so one execution over a month returns the rows of thirty daily ones. The submitter asks
`plan_pack` which windows go with the attempt it is about to send; the store claims them all or none
(`ExecutionStore.claim_pack`), the leader's status moves carry its members (`store/packs.py`), and the
landing splits the result back (`monitor/pack_landing.py`).

Rules: only QUEUED windows whose create never started, of one workflow and instance, contiguous
(each window starts where the previous one ends), at most `max_windows`; landed, running and
failed windows are never repacked (they are not QUEUED), and a window materialized alone later is
QUEUED alone and gets its own execution. A backfill enqueues its windows one run at a time, so a block
that is not yet full waits until no window joined it for `settle_seconds`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from amc_pipeline.config import WorkflowConfig
from amc_pipeline.partitions import Window, window_for
from amc_pipeline.store.records import Attempt, ExecutionView
from amc_pipeline.store.states import ACTIVE, QUEUED
from amc_pipeline.store.store import ExecutionStore

log = logging.getLogger(__name__)

#: Candidates are read within this many days per window on either side of the leader (a month at most).
_DAYS_PER_WINDOW = 32


@dataclass(frozen=True)
class PackPlan:
    """What to send with one queued attempt: the other windows, the AMC window, or why not now."""

    #: (execution, attempt) of the other windows, by window start; empty: send the window alone.
    members: tuple[tuple[ExecutionView, Attempt], ...] = ()
    #: First start to last end of every window of the pack (None when there are no members).
    window: Window | None = None
    #: The block is not full and a window joined it less than `settle_seconds` ago: wait until then.
    wait_until: datetime | None = None
    #: The attempts of that block: all wait together, so they are due together and packed together.
    waiting: tuple[int, ...] = ()
    #: The attempt is no longer a free queued window (another pass packed or sent it): leave it.
    skip: bool = False


def plan_pack(
    store: ExecutionStore, workflow: WorkflowConfig, execution: ExecutionView, attempt: Attempt, now: datetime
) -> PackPlan | None:
    """The pack `attempt` would lead now; None when the workflow does not pack.

    The attempt is re-read first: the submitter's list of queued attempts was read before this pass
    packed some of them into an earlier leader's pack.
    """
    packing = workflow.packing
    if packing is None:
        return None
    fresh = store.get_attempt(attempt.id)
    if fresh.is_pack_member and fresh.status == QUEUED and fresh.next_check_at is not None:
        # A member is never due itself (its leader's create carries it): undo a deferral written to it
        # from a stale list, so the monitor sensor does not see it as work.
        store.update_attempt(fresh.id, expect_status=QUEUED, next_check_at=None)
    if fresh.status != QUEUED or fresh.submit_started_at is not None or fresh.is_pack_member:
        return PackPlan(skip=True)
    if packing.max_windows < 2:
        return PackPlan()
    own = window_for(workflow, execution.partition_key)
    span = timedelta(days=_DAYS_PER_WINDOW * packing.max_windows)
    items: list[tuple[Window, ExecutionView, Attempt]] = []
    for other, other_attempt in store.pack_candidates(
        workflow.name, execution.instance_id, attempt.id, own.start_utc - span, own.end_utc + span
    ):
        try:
            items.append((window_for(workflow, other.partition_key), other, other_attempt))
        except ValueError:
            continue  # a key the workflow no longer has (its range changed): never packed
    block = _contiguous_block(own, execution, fresh, items)
    index = next(i for i, (_, e, _) in enumerate(block) if e.id == execution.id)
    start = (index // packing.max_windows) * packing.max_windows
    chunk = block[start : start + packing.max_windows]
    if len(chunk) < packing.max_windows and packing.settle_seconds > 0:
        newest = max(e.requested_at for _, e, _ in block)
        settled_at = newest + timedelta(seconds=packing.settle_seconds)
        if settled_at > now:
            return PackPlan(wait_until=settled_at, waiting=tuple(a.id for _, _, a in block))
    members = tuple((e, a) for _, e, a in chunk if e.id != execution.id)
    if not members:
        return PackPlan()
    window = replace(own, partition_key=f"{chunk[0][1].partition_key}..{chunk[-1][1].partition_key}",
                     start_local=chunk[0][0].start_local, end_local=chunk[-1][0].end_local)
    return PackPlan(members=members, window=window)


def _contiguous_block(
    own: Window, execution: ExecutionView, attempt: Attempt, items: list[tuple[Window, ExecutionView, Attempt]]
) -> list[tuple[Window, ExecutionView, Attempt]]:
    """The run of windows around the leader in which each starts exactly where the previous one ends."""
    by_start = {w.start_utc: (w, e, a) for w, e, a in items}
    by_end = {w.end_utc: (w, e, a) for w, e, a in items}
    block = [(own, execution, attempt)]
    while block[0][0].start_utc in by_end:
        block.insert(0, by_end.pop(block[0][0].start_utc))
    while block[-1][0].end_utc in by_start:
        block.append(by_start.pop(block[-1][0].end_utc))
    return block


def defer_pack(store: ExecutionStore, plan: PackPlan) -> int:
    """Make every window of a settling block due at `plan.wait_until`; returns how many were deferred."""
    assert plan.wait_until is not None
    return sum(store.update_attempt(attempt_id, expect_status=QUEUED, next_check_at=plan.wait_until)
               for attempt_id in plan.waiting)


def claim_for_submit(store: ExecutionStore, plan: PackPlan | None, attempt: Attempt, now: datetime) -> bool:
    """Claim the attempt for its create call: with its members when it leads a pack, else as before."""
    if plan is not None and plan.members:
        return store.claim_pack(attempt.id, [a.id for _, a in plan.members], now)
    return store.begin_submit(attempt.id, now)


def execution_window(
    store: ExecutionStore, workflow: WorkflowConfig, execution: ExecutionView, attempt: Attempt
) -> Window:
    """The AMC window `attempt` was (or is to be) sent with: its own, or its pack's first start to last end.

    Used to recognise the execution a lost create made, which must cover exactly the claimed windows.
    """
    own = window_for(workflow, execution.partition_key)
    if not attempt.is_pack_leader:
        return own
    windows = [own] + [window_for(workflow, e.partition_key) for e, _ in store.pack_members(attempt.id)]
    windows.sort(key=lambda w: w.start_utc)
    return replace(own, partition_key=f"{windows[0].partition_key}..{windows[-1].partition_key}",
                   start_local=windows[0].start_local, end_local=windows[-1].end_local)


def retry_members(store: ExecutionStore, leader: Attempt, next_check_at: datetime, now: datetime) -> int:
    """A pack that failed for a retryable reason is retried whole: each member gets a new attempt too.

    The new attempts are QUEUED and due with the leader's, outside any pack, so the next submit pass
    packs them again (the same windows, one new execution). Members that left the pack (cancelled or
    superseded on their own) are not retried. Returns how many windows got a new attempt.
    """
    retried = 0
    status = store.get_attempt(leader.id).status
    for execution, member in store.pack_members(leader.id):
        if not execution.live or execution.current_attempt_id != member.id or member.status != status:
            continue
        if store.new_attempt(execution.id, member.id, next_check_at=next_check_at, now=now) is not None:
            retried += 1
    return retried


def cancel_target(
    store: ExecutionStore, execution: ExecutionView, attempt: Attempt
) -> tuple[ExecutionView, Attempt]:
    """What cancelling `attempt` cancels: a member in flight cancels its pack's AMC execution.

    Why the whole pack: AMC runs one query for all its windows and cannot cancel part of it; keeping
    the pack running for the others while this window is dropped would cost the same quota and
    compute. Every window of the pack then shows CANCELLED (the leader's move carries its members).
    """
    if not attempt.is_pack_member or attempt.status not in ACTIVE | {QUEUED}:
        return execution, attempt
    leading = store.pack_of(attempt)
    if leading is None or leading[1].status != attempt.status:
        return execution, attempt
    log.info("%s/%s rides on the pack led by attempt %s; cancelling the pack",
             execution.workflow, execution.partition_key, leading[1].id)
    return leading
