"""Cancelling executions at AMC and in the store (the cancel job, and TIMEOUT enforcement).

AMC accepts a cancel only from PENDING or RUNNING; a 400 means it already reached a terminal state,
which the next poll will record. A QUEUED attempt was never sent, so it is cancelled in the store only.
"""

import logging
from datetime import datetime

from amc_pipeline.amc.client import AmcClient, AsyncAmcClient
from amc_pipeline.amc.errors import AmcError
from amc_pipeline.config import InstanceConfig
from amc_pipeline.monitor.events import StatusChange
from amc_pipeline.store.records import Attempt, ExecutionView
from amc_pipeline.store.store import ExecutionStore

log = logging.getLogger(__name__)


def _needs_amc_cancel(attempt: Attempt) -> bool:
    return attempt.status in ("PENDING", "RUNNING") and attempt.amc_execution_id is not None


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
    if not store.transition(attempt.id, attempt.status, to_status, now=now, failure_reason=reason,
                            next_check_at=None):
        return None
    return StatusChange(
        workflow=execution.workflow, partition_key=execution.partition_key, execution_id=execution.id,
        attempt=attempt.attempt, from_status=attempt.status, to_status=to_status,
        amc_execution_id=attempt.amc_execution_id, reason=reason,
    )


def cancel_attempt(
    store: ExecutionStore,
    client: AmcClient,
    instance: InstanceConfig,
    execution: ExecutionView,
    attempt: Attempt,
    now: datetime,
    *,
    to_status: str = "CANCELLED",
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
    to_status: str = "CANCELLED",
    reason: str = "cancelled by request",
) -> StatusChange | None:
    error = None
    if _needs_amc_cancel(attempt):
        try:
            await client.cancel_execution(instance, attempt.amc_execution_id)
        except AmcError as exc:
            error = exc
    return _record(store, execution, attempt, now, to_status, reason, error)
