"""Frozen, typed views of store rows: what the monitor, sensors and assets read.

Why frozen dataclasses and not rows: a view is a snapshot; to change anything the caller must go
through the store's compare-and-set methods, which re-check the database.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from amc_pipeline.store.states import ACTIVE, QUEUED, TERMINAL


@dataclass(frozen=True)
class Attempt:
    """One AMC execution attempt of an execution (attempt 1, then retries)."""

    id: int
    execution_id: int
    attempt: int
    status: str
    client_token: str
    amc_execution_id: str | None
    amc_request_id: str | None
    amc_status: str | None
    created_at: datetime
    submit_started_at: datetime | None
    submitted_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    status_changed_at: datetime | None
    next_check_at: datetime | None
    last_checked_at: datetime | None
    error_count: int
    last_error: str | None
    error_type: str | None
    retry_count: int
    failure_reason: str | None
    execution_time_seconds: float | None
    output_columns: str | None  # JSON text, see `columns()`
    #: Who started the AMC execution: None (this pipeline), "schedule" (an AMC schedule), "external".
    origin: str | None = None
    #: Packing (docs/packing.md): the id of the pack's leading attempt; this attempt's own id when it
    #: leads a pack; None outside packs.
    pack_leader_id: int | None = None

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def is_pack_member(self) -> bool:
        """A window riding on another attempt's AMC execution: never submitted or polled itself."""
        return self.pack_leader_id is not None and self.pack_leader_id != self.id

    @property
    def is_pack_leader(self) -> bool:
        return self.pack_leader_id is not None and self.pack_leader_id == self.id

    @property
    def is_ambiguous(self) -> bool:
        """A create was started and we do not know whether AMC has the execution: resolve by listing."""
        return self.status == QUEUED and self.submit_started_at is not None and self.amc_execution_id is None

    def columns(self) -> list[dict[str, Any]]:
        """`output_columns` parsed from its JSON text ([] when unknown)."""
        if not self.output_columns:
            return []
        value = json.loads(self.output_columns)
        return value if isinstance(value, list) else []

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any], prefix: str = "") -> "Attempt":
        return cls(**{name: row[prefix + name] for name in _ATTEMPT_FIELDS})


@dataclass(frozen=True)
class ExecutionView:
    """One requested (workflow, window) with its current attempt."""

    id: int
    workflow: str
    instance_id: str
    partition_key: str
    window_start: datetime
    window_end: datetime
    requested_at: datetime
    live: bool
    current_attempt_id: int | None
    landed_at: datetime | None
    rows: int | None
    bytes: int | None
    uri: str | None
    land_attempts: int
    land_error: str | None
    next_land_at: datetime | None
    landed_attempt_id: int | None
    attempt: Attempt | None

    @property
    def status(self) -> str | None:
        """The current attempt's status (None only for a row caught mid-insert, which callers never see)."""
        return self.attempt.status if self.attempt is not None else None

    @property
    def landed(self) -> bool:
        """True when the current attempt's result has landed."""
        return self.landed_attempt_id is not None and self.landed_attempt_id == self.current_attempt_id

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any], prefix: str = "", attempt: Attempt | None = None) -> "ExecutionView":
        values = {name: row[prefix + name] for name in _EXECUTION_FIELDS}
        values["live"] = bool(values["live"])
        return cls(**values, attempt=attempt)


@dataclass(frozen=True)
class DueSummary:
    """What the monitor sensor needs to decide whether to request a run, from counts only."""

    submit_due: int
    poll_due: int
    ambiguous: int
    next_due_at: datetime | None
    oldest_due_ids: tuple[int, ...]
    #: The latest next_check_at among all due attempts: it moves whenever a pass reschedules any of
    #: them, so the monitor sensor's run key changes with each new round of due work.
    newest_due_at: datetime | None = None

    @property
    def any_due(self) -> bool:
        return bool(self.submit_due or self.poll_due or self.ambiguous)


class Superseded(NamedTuple):
    """What a forced enqueue superseded: the old execution and its current attempt, as written.

    Why the caller needs it: the store cancels the old attempt itself only when nothing can exist at
    AMC (QUEUED, submit never started: `cancelled` True). Otherwise (`cancelled` False) the attempt may
    be running at AMC and it is the caller's to cancel there, using exactly this attempt rather than a
    re-read that could race with the monitor.
    """

    #: The old execution after the supersede (live False), with its current attempt.
    execution: ExecutionView
    #: That current attempt after the supersede (CANCELLED when `cancelled`); None only mid-insert.
    attempt: Attempt | None
    #: True when the store cancelled the attempt in the same transaction as the new execution's insert.
    cancelled: bool


class Enqueued(NamedTuple):
    """The result of `ExecutionStore.enqueue_forced`: the live execution and what it replaced."""

    #: The live execution for (workflow, partition_key).
    execution: ExecutionView
    #: False when another process created the live execution first (this call then superseded nothing).
    created: bool
    #: The execution this call superseded; None when nothing was live (or the race was lost).
    superseded: Superseded | None


_ATTEMPT_FIELDS = tuple(f for f in Attempt.__dataclass_fields__)
_EXECUTION_FIELDS = tuple(f for f in ExecutionView.__dataclass_fields__ if f != "attempt")
