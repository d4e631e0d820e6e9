"""Small builders shared by the store tests (not fixtures: plain functions taking the store)."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from amc_pipeline.store import Attempt, ExecutionStore, ExecutionView
from amc_pipeline.store.tables import amc_execution_attempts

T0 = datetime(2024, 9, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def enq(
    store: ExecutionStore,
    key: str,
    *,
    workflow: str = "wf",
    instance: str = "inst",
    now: datetime = T0,
    force_new: bool = False,
) -> ExecutionView:
    view, _ = store.enqueue(
        workflow=workflow,
        instance_id=instance,
        partition_key=key,
        window_start=datetime.fromisoformat(key).replace(tzinfo=UTC) if key[:2] == "20" else T0,
        window_end=T0 + timedelta(days=1),
        force_new=force_new,
        now=now,
    )
    return view


def force_status(store: ExecutionStore, attempt_id: int, status: str) -> None:
    """Test-only: put an attempt in any status without the state machine."""
    with store.engine.begin() as conn:
        conn.execute(
            update(amc_execution_attempts).where(amc_execution_attempts.c.id == attempt_id).values(status=status)
        )


def submit(
    store: ExecutionStore, view: ExecutionView, amc_id: str, *, now: datetime = T0, next_check: float = 0
) -> Attempt:
    """QUEUED -> PENDING the way the monitor does it: claim, create, record the AMC id."""
    assert view.attempt is not None
    assert store.begin_submit(view.attempt.id, now)
    assert store.transition(
        view.attempt.id,
        "QUEUED",
        "PENDING",
        now=now,
        amc_execution_id=amc_id,
        next_check_at=now + timedelta(seconds=next_check),
    )
    return store.get_attempt(view.attempt.id)
