"""Executions and their attempts: enqueue (and supersede), reads by id, status moves, new attempts.

Why these belong together: they are the writes that create rows or change an attempt's lifecycle,
plus the plain reads by key that callers use right before or after them. Every write is one short
transaction; every status change goes through `status_writes.set_status` (compare-and-set against
`ALLOWED`), and duplicates are refused by unique indexes, not by in-process locks.
"""

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.exc import IntegrityError

from amc_pipeline.store.engine import StoreEngine
from amc_pipeline.store.packs import mirror_to_members, release_members
from amc_pipeline.store.records import Attempt, Enqueued, ExecutionView, Superseded
from amc_pipeline.store.rows import (
    A,
    E,
    encode_fields,
    get_attempt,
    get_view,
    live_row,
    new_token,
    pair_from,
    pairs_select,
    utc,
    view_from,
)
from amc_pipeline.store.states import CANCELLED, ORIGINS, PENDING, QUEUED
from amc_pipeline.store.status_writes import move_allowed, set_status

logger = logging.getLogger(__name__)

#: How many times enqueue retries after losing a unique-index race before giving up.
_ENQUEUE_RETRIES = 5
#: last_error of an attempt cancelled because a forced re-run superseded it before it was submitted.
SUPERSEDED_ERROR = "superseded by a forced re-run before submit"


class Executions(StoreEngine):
    """Creating executions and attempts, reading them by key, and moving attempt statuses."""

    # ------------------------------------------------------------------------------------------ enqueue

    def enqueue(
        self,
        *,
        workflow: str,
        instance_id: str,
        partition_key: str,
        window_start: datetime,
        window_end: datetime,
        force_new: bool = False,
        now: datetime | None = None,
    ) -> tuple[ExecutionView, bool]:
        """The live execution for (workflow, partition_key), creating it (attempt 1, QUEUED) if needed.

        Never creates a duplicate: the partial unique index on (workflow, partition_key) WHERE live
        refuses a second live row, and the loser of a race re-reads the winner's row (created False).
        `force_new` supersedes the live row (live=False) and creates a new one in the same transaction;
        the old attempt is cancelled here only when it is QUEUED and its submit never started (nothing
        exists at AMC); an active old attempt is the caller's to cancel at AMC. Returns (execution,
        created); `enqueue_forced` also says what was superseded.
        """
        result = self._enqueue(workflow, instance_id, partition_key, window_start, window_end, force_new, now)
        return result.execution, result.created

    def enqueue_forced(
        self,
        *,
        workflow: str,
        instance_id: str,
        partition_key: str,
        window_start: datetime,
        window_end: datetime,
        now: datetime | None = None,
    ) -> Enqueued:
        """`enqueue(..., force_new=True)`, returning `Enqueued(execution, created, superseded)`.

        `superseded` is the old execution, its attempt and whether the store cancelled that attempt
        (`Superseded.cancelled`); when False and the attempt is active, the caller cancels it at AMC.
        """
        return self._enqueue(workflow, instance_id, partition_key, window_start, window_end, True, now)

    def _enqueue(
        self,
        workflow: str,
        instance_id: str,
        partition_key: str,
        window_start: datetime,
        window_end: datetime,
        force_new: bool,
        now: datetime | None,
    ) -> Enqueued:
        now = utc(now)
        utc(window_start)
        utc(window_end)
        for _ in range(_ENQUEUE_RETRIES):
            try:
                with self.engine.begin() as conn:
                    existing = live_row(conn, workflow, partition_key)
                    superseded = None
                    if existing is not None:
                        if not force_new:
                            return Enqueued(view_from(existing), False, None)
                        superseded = _supersede(conn, existing, now)
                    execution_id = _insert_execution(
                        conn, workflow, instance_id, partition_key, window_start, window_end, now
                    )
                    return Enqueued(get_view(conn, execution_id), True, superseded)
            except IntegrityError as exc:
                # Another process inserted the live row first (or, astronomically, a token clashed);
                # this transaction, our supersede included, was rolled back.
                logger.info("enqueue %s/%s lost a race, re-reading: %s", workflow, partition_key, exc.orig)
                with self._read() as conn:
                    existing = live_row(conn, workflow, partition_key)
                if existing is not None:
                    return Enqueued(view_from(existing), False, None)
        raise RuntimeError(f"enqueue {workflow}/{partition_key}: gave up after {_ENQUEUE_RETRIES} races")

    # -------------------------------------------------------------------------------------------- reads

    def get(self, execution_id: int) -> ExecutionView:
        """The execution with its current attempt; `ExecutionNotFound` when there is none."""
        with self._read() as conn:
            return get_view(conn, execution_id)

    def get_live(self, workflow: str, partition_key: str) -> ExecutionView | None:
        """The live execution for (workflow, partition_key), if any."""
        with self._read() as conn:
            row = live_row(conn, workflow, partition_key)
        return view_from(row) if row is not None else None

    def get_attempt(self, attempt_id: int) -> Attempt:
        """One attempt; `ExecutionNotFound` when there is none."""
        with self._read() as conn:
            return get_attempt(conn, attempt_id)

    def attempts_for(self, execution_id: int) -> list[Attempt]:
        """All attempts of an execution, attempt 1 first."""
        with self._read() as conn:
            rows = conn.execute(select(A).where(A.c.execution_id == execution_id).order_by(A.c.attempt)).mappings()
            return [Attempt.from_mapping(r) for r in rows]

    def get_by_amc_id(self, amc_execution_id: str) -> tuple[ExecutionView, Attempt] | None:
        """The attempt AMC knows as `amc_execution_id`, with its execution (addition: adoption, debugging)."""
        with self._read() as conn:
            row = conn.execute(pairs_select().where(A.c.amc_execution_id == amc_execution_id)).mappings().first()
        return pair_from(row) if row is not None else None

    # ------------------------------------------------------------------------------------------- writes

    def transition(
        self, attempt_id: int, from_status: str, to_status: str, *, now: datetime | None = None, **fields: Any
    ) -> bool:
        """Compare-and-set the attempt's status `from_status -> to_status` (one UPDATE, own transaction).

        Returns False, changing nothing, when the move is not allowed (logged with both states) or when
        the attempt is no longer in `from_status` (someone else moved it first). See `set_status`.
        """
        # Checked before the transaction too, so a refused move never takes SQLite's write lock.
        if not move_allowed(attempt_id, from_status, to_status):
            return False
        now = utc(now)
        with self.engine.begin() as conn:
            moved = set_status(conn, attempt_id, from_status, to_status, now=now, **fields)
            if moved:  # a pack's leader carries its members (store/packs.py); no rows for anyone else
                mirror_to_members(conn, attempt_id, from_status, to_status, now, fields)
            return moved

    def adopt_attempt(self, attempt_id: int, *, now: datetime, origin: str, **fields: Any) -> bool:
        """QUEUED -> PENDING for an AMC execution this pipeline did not create (`origin`), if no create started.

        The extra condition (submit never started) is what makes adoption and submission exclusive:
        a monitor run that already began a create for this attempt keeps it, and the adopter backs off,
        so a window never gets two executions from the two paths.
        """
        if origin not in ORIGINS:
            raise ValueError(f"unknown origin {origin!r}; expected one of {', '.join(ORIGINS)}")
        now = utc(now)
        with self.engine.begin() as conn:
            return set_status(conn, attempt_id, QUEUED, PENDING, now=now, where=(A.c.submit_started_at.is_(None),),
                              origin=origin, **fields)

    def update_attempt(self, attempt_id: int, *, expect_status: str | None = None, **fields: Any) -> bool:
        """Set attempt columns without changing the status (CAS on status when `expect_status` is given)."""
        if "status" in fields:
            raise ValueError("update_attempt does not change the status: use transition()")
        values = encode_fields(fields)
        if not values:
            raise ValueError("update_attempt needs at least one field")
        stmt = update(A).where(A.c.id == attempt_id)
        if expect_status is not None:
            stmt = stmt.where(A.c.status == expect_status)
        with self.engine.begin() as conn:
            return conn.execute(stmt.values(**values)).rowcount == 1

    def new_attempt(
        self,
        execution_id: int,
        previous_attempt_id: int,
        *,
        next_check_at: datetime,
        now: datetime | None = None,
    ) -> Attempt | None:
        """Start attempt N+1 (QUEUED) if `previous_attempt_id` is still the execution's current attempt.

        CAS on current_attempt_id: of two runs retrying the same failure, one creates the new attempt and
        the other gets None (its insert is rolled back with its transaction).
        """
        now = utc(now)

        class _Lost(Exception):
            pass

        try:
            with self.engine.begin() as conn:
                previous = get_attempt(conn, previous_attempt_id)
                if previous.execution_id != execution_id:
                    raise ValueError(f"attempt {previous_attempt_id} is not of execution {execution_id}")
                number = conn.execute(
                    select(func.max(A.c.attempt)).where(A.c.execution_id == execution_id)
                ).scalar_one()
                attempt_id = _insert_attempt(
                    conn, execution_id, number + 1, previous.retry_count + 1, now, utc(next_check_at)
                )
                result = conn.execute(
                    update(E)
                    .where(E.c.id == execution_id, E.c.current_attempt_id == previous_attempt_id)
                    .values(current_attempt_id=attempt_id, next_land_at=None, land_error=None)
                )
                if result.rowcount != 1:
                    raise _Lost
                return get_attempt(conn, attempt_id)
        except _Lost:
            return None
        except IntegrityError:
            # A concurrent new_attempt took the same attempt number: it won the CAS.
            return None


# ------------------------------------------------------------------------------ helpers on a connection


def _supersede(conn: Connection, existing: Mapping[str, Any], now: datetime) -> Superseded:
    """Take the live execution out of service and cancel its attempt if nothing can exist at AMC yet.

    The cancel is the ordinary status CAS (QUEUED -> CANCELLED) with one extra condition, submit never
    started: once a create call may have been sent, only the caller can cancel it (at AMC).
    """
    conn.execute(update(E).where(E.c.id == existing["e_id"], E.c.live).values(live=False))
    cancelled = False
    # The snapshot only skips a write that cannot apply (nothing returns to QUEUED); the CAS decides.
    if existing["c_id"] is not None and existing["c_status"] == QUEUED:
        cancelled = set_status(
            conn,
            existing["c_id"],
            QUEUED,
            CANCELLED,
            now=now,
            where=(A.c.submit_started_at.is_(None),),
            last_error=SUPERSEDED_ERROR,
        )
        if cancelled:  # a leader whose create was never sent: its claimed windows are free again
            release_members(conn, existing["c_id"], now)
    old = get_view(conn, existing["e_id"])
    return Superseded(old, old.attempt, cancelled)


def _insert_execution(
    conn: Connection,
    workflow: str,
    instance_id: str,
    partition_key: str,
    window_start: datetime,
    window_end: datetime,
    now: datetime,
) -> int:
    """Insert a live execution with its attempt 1 (QUEUED, due now); returns the execution id."""
    execution_id = conn.execute(
        E.insert()
        .values(
            workflow=workflow,
            instance_id=instance_id,
            partition_key=partition_key,
            window_start=window_start,
            window_end=window_end,
            requested_at=now,
            live=True,
            land_attempts=0,
        )
        .returning(E.c.id)
    ).scalar_one()
    attempt_id = _insert_attempt(conn, execution_id, 1, 0, now, now)
    conn.execute(update(E).where(E.c.id == execution_id).values(current_attempt_id=attempt_id))
    return execution_id


def _insert_attempt(
    conn: Connection,
    execution_id: int,
    number: int,
    retry_count: int,
    now: datetime,
    next_check_at: datetime,
) -> int:
    """Insert attempt `number` of the execution, QUEUED with a fresh client token; returns its id."""
    return conn.execute(
        A.insert()
        .values(
            execution_id=execution_id,
            attempt=number,
            status=QUEUED,
            client_token=new_token(),
            created_at=now,
            status_changed_at=now,
            next_check_at=next_check_at,
            error_count=0,
            retry_count=retry_count,
        )
        .returning(A.c.id)
    ).scalar_one()
