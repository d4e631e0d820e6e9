"""The execution store: executions, their AMC attempts, the lifecycle state machine and its queries."""

from amc_pipeline.store.records import Attempt, DueSummary, Enqueued, ExecutionView, Superseded
from amc_pipeline.store.states import (
    ACTIVE,
    ALLOWED,
    CANCELLED,
    FAILED,
    PENDING,
    QUEUED,
    RUNNING,
    STATUSES,
    SUCCESS,
    TERMINAL,
    TIMEOUT,
    can_transition,
)
from amc_pipeline.store.store import ExecutionNotFound, ExecutionStore

__all__ = [
    "ACTIVE",
    "ALLOWED",
    "CANCELLED",
    "FAILED",
    "PENDING",
    "QUEUED",
    "RUNNING",
    "STATUSES",
    "SUCCESS",
    "TERMINAL",
    "TIMEOUT",
    "Attempt",
    "DueSummary",
    "Enqueued",
    "ExecutionNotFound",
    "ExecutionStore",
    "ExecutionView",
    "Superseded",
    "can_transition",
]
