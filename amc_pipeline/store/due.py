"""Due work for the monitor: what to submit, resolve or poll now, quota and slot counts, and check records.

Why a module of its own: these are the hot queries of every monitor pass and sensor tick, shaped
around the (status, submit_started_at, next_check_at) indexes; keeping them together makes it easy to
see which index serves which question. None of them changes an attempt's status (status moves go
through `transition`); `begin_submit` only claims a QUEUED attempt for its create call.
"""

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from amc_pipeline.store.engine import StoreEngine
from amc_pipeline.store.packs import not_member
from amc_pipeline.store.records import Attempt, DueSummary, ExecutionView
from amc_pipeline.store.rows import (
    A,
    E,
    ExecutionNotFound,
    get_attempt,
    pair_from,
    pairs_select,
    run_pairs,
    ts,
    utc,
)
from amc_pipeline.store.states import ACTIVE, ORIGIN_SCHEDULE, PENDING, QUEUED, RUNNING, SUCCESS
from amc_pipeline.store.tables import UTCDateTime

#: How many due attempt ids a `DueSummary` carries (the sensor's run key and log line).
_DUE_IDS = 20
#: Ids per IN (...) list: well under SQLite's bound-parameter limit.
_IN_CHUNK = 500
#: Statuses the monitor still has work for (submit, resolve or poll).
_WATCHED = (QUEUED, PENDING, RUNNING)


class DueCheck(NamedTuple):
    """(Addition) What a poll pass needs of one due attempt, without loading the full rows.

    Field names match `Attempt`'s where they overlap, so scheduling helpers that read
    `status_changed_at`/`submitted_at` accept either.
    """

    attempt_id: int
    execution_id: int
    workflow: str
    instance_id: str
    status: str
    amc_status: str | None
    amc_execution_id: str | None
    created_at: datetime | None
    submitted_at: datetime | None
    status_changed_at: datetime | None
    started_at: datetime | None = None


class DueWork(StoreEngine):
    """The monitor's queries (what is due, how many slots and quota are used) and its check records."""

    # -------------------------------------------------------------------------------------- summaries

    def due_summary(self, now: datetime | None = None) -> DueSummary:
        """Counts for the monitor sensor, from the indexes only (no rows loaded), in one read transaction.

        submit_due: QUEUED, submit not started, next_check_at <= now. ambiguous: QUEUED with a submit
        started (an unresolved or in-flight create), next_check_at <= now. poll_due: PENDING/RUNNING with
        next_check_at <= now. next_due_at: the earliest next_check_at of any QUEUED/PENDING/RUNNING attempt
        (past or future). oldest_due_ids: up to 20 due attempt ids, earliest next_check_at first.
        newest_due_at: the latest next_check_at of any due QUEUED/PENDING/RUNNING attempt.
        """
        now = utc(now)
        due = A.c.next_check_at <= ts(now)

        def count(*where: ColumnElement[bool]) -> Any:
            return select(func.count()).select_from(A).where(*where).scalar_subquery()

        def earliest(status: str) -> Any:
            return select(func.min(A.c.next_check_at)).where(A.c.status == status).scalar_subquery()

        counts = select(
            count(A.c.status == QUEUED, A.c.submit_started_at.is_(None), due).label("submit_due"),
            count(A.c.status == QUEUED, A.c.submit_started_at.is_not(None), due).label("ambiguous"),
            count(A.c.status == PENDING, due).label("pending_due"),
            count(A.c.status == RUNNING, due).label("running_due"),
            earliest(QUEUED).label("q_min"),
            earliest(PENDING).label("p_min"),
            earliest(RUNNING).label("r_min"),
            select(func.max(A.c.next_check_at)).where(A.c.status.in_(_WATCHED), due)
            .scalar_subquery().label("due_max"),
        )
        due_ids: list[tuple[datetime, int]] = []
        with self._read() as conn:
            row = conn.execute(counts).mappings().one()
            for status in _WATCHED:
                stmt = (
                    select(A.c.next_check_at, A.c.id)
                    .where(A.c.status == status, due)
                    .order_by(A.c.next_check_at, A.c.id)
                    .limit(_DUE_IDS)
                )
                due_ids.extend((r.next_check_at, r.id) for r in conn.execute(stmt))
        present = [row[k] for k in ("q_min", "p_min", "r_min") if row[k] is not None]
        return DueSummary(
            submit_due=int(row["submit_due"]),
            poll_due=int(row["pending_due"]) + int(row["running_due"]),
            ambiguous=int(row["ambiguous"]),
            next_due_at=min(present) if present else None,
            oldest_due_ids=tuple(i for _, i in sorted(due_ids)[:_DUE_IDS]),
            newest_due_at=row["due_max"],
        )

    def active_count(self, instance_id: str) -> int:
        """Attempts holding (or maybe holding) an AMC slot: PENDING/RUNNING, or QUEUED with submit started."""
        return self.active_counts([instance_id]).get(instance_id, 0)

    def active_counts(self, instance_ids: Sequence[str]) -> dict[str, int]:
        """`active_count` of each instance in one query (an account's limit spans all its instances);
        instances with none are absent."""
        if not instance_ids:
            return {}
        stmt = (
            select(E.c.instance_id, func.count())
            .select_from(A.join(E, E.c.id == A.c.execution_id))
            .where(
                E.c.instance_id.in_(list(instance_ids)),
                not_member(),  # a pack holds one slot
                or_(
                    A.c.status.in_(sorted(ACTIVE)),
                    and_(A.c.status == QUEUED, A.c.submit_started_at.is_not(None)),
                ),
            )
            .group_by(E.c.instance_id)
        )
        with self._read() as conn:
            return {row[0]: int(row[1]) for row in conn.execute(stmt)}

    def instances_with_submit_work(self, now: datetime | None = None) -> set[str]:
        """Instances with a QUEUED current attempt that is due (to submit, or an ambiguous create to
        resolve): the submit pass visits only these, however many instances are configured."""
        now = utc(now)
        stmt = (
            select(E.c.instance_id)
            .select_from(A.join(E, E.c.current_attempt_id == A.c.id))
            .where(A.c.status == QUEUED, A.c.next_check_at <= ts(now), E.c.live)
            .distinct()
        )
        with self._read() as conn:
            return {row[0] for row in conn.execute(stmt)}

    def submitted_since(self, instance_id: str, since: datetime) -> int:
        """Executions counted against the daily quota since `since`: submitted, or a create started
        without an AMC id (it may exist at AMC: count it, never exceed the quota)."""
        since = utc(since)
        stmt = (
            select(func.count())
            .select_from(A.join(E, E.c.id == A.c.execution_id))
            .where(
                E.c.instance_id == instance_id,
                # An AMC schedule's runs spend no ad hoc quota (an execution started elsewhere does).
                or_(A.c.origin.is_(None), A.c.origin != ORIGIN_SCHEDULE),
                or_(
                    A.c.submitted_at >= ts(since),
                    and_(
                        A.c.submitted_at.is_(None),
                        A.c.submit_started_at >= ts(since),
                        A.c.amc_execution_id.is_(None),
                    ),
                ),
            )
        )
        with self._read() as conn:
            return int(conn.execute(stmt).scalar_one())

    # ------------------------------------------------------------------------------------------ submit

    def queued_for_submit(
        self, instance_id: str, now: datetime | None = None, limit: int = 100
    ) -> list[tuple[ExecutionView, Attempt]]:
        """QUEUED, never-submitted current attempts of live executions that are due, oldest request first."""
        now = utc(now)
        stmt = (
            pairs_select()
            .where(
                A.c.status == QUEUED,
                A.c.submit_started_at.is_(None),
                A.c.next_check_at <= ts(now),
                E.c.current_attempt_id == A.c.id,
                E.c.live,
                E.c.instance_id == instance_id,
            )
            .order_by(E.c.requested_at, E.c.id)
            .limit(limit)
        )
        with self._read() as conn:
            return [pair_from(r) for r in conn.execute(stmt).mappings()]

    def begin_submit(
        self, attempt_id: int, now: datetime | None = None, *, next_check_at: datetime | None = None
    ) -> bool:
        """Claim the attempt for a create call: CAS QUEUED with submit_started_at NULL -> set it.

        Exactly one caller wins; after this, an attempt still QUEUED without an AMC id is an ambiguous
        create that must be resolved by listing the instance's executions, never by a second POST.
        `next_check_at` (addition) optionally delays when the sensor sees it as due for resolution.
        """
        now = utc(now)
        values: dict[str, Any] = {"submit_started_at": now}
        if next_check_at is not None:
            values["next_check_at"] = utc(next_check_at)
        with self.engine.begin() as conn:
            result = conn.execute(
                update(A)
                .where(A.c.id == attempt_id, A.c.status == QUEUED, A.c.submit_started_at.is_(None), not_member())
                .values(**values)
            )
            return result.rowcount == 1

    def ambiguous_attempts(
        self, instance_id: str | None = None, now: datetime | None = None, limit: int | None = None
    ) -> list[tuple[ExecutionView, Attempt]]:
        """(Addition) QUEUED attempts whose create started but has no AMC id: resolve by listing.

        `now` given: only those due (next_check_at <= now); None: all of them. Oldest submit first.
        """
        stmt = pairs_select().where(
            A.c.status == QUEUED, A.c.submit_started_at.is_not(None), A.c.amc_execution_id.is_(None)
        )
        if now is not None:
            stmt = stmt.where(A.c.next_check_at <= ts(utc(now)))
        with self._read() as conn:
            return run_pairs(conn, stmt, instance_id, (A.c.submit_started_at, A.c.id), limit)

    # -------------------------------------------------------------------------------------------- poll

    def due_for_poll(
        self, now: datetime | None = None, limit: int | None = None, instance_id: str | None = None
    ) -> list[tuple[ExecutionView, Attempt]]:
        """PENDING/RUNNING attempts with next_check_at <= now, earliest due first (any execution, live or not:
        a superseded execution still running at AMC is still watched)."""
        now = utc(now)
        stmt = pairs_select().where(A.c.status.in_(sorted(ACTIVE)), A.c.next_check_at <= ts(now))
        with self._read() as conn:
            return run_pairs(conn, stmt, instance_id, (A.c.next_check_at, A.c.id), limit)

    def due_checks(
        self, now: datetime | None = None, limit: int | None = None, instance_id: str | None = None,
        *, every_active: bool = False,
    ) -> list[DueCheck]:
        """(Addition) Same attempts and order as `due_for_poll`, as light `DueCheck` tuples.

        Why: a poll pass over thousands of due attempts only needs ids, statuses and three times for
        most of them; building the full (ExecutionView, Attempt) pairs (some 25 datetime columns a row)
        cost more than the pass's AMC requests. Load full pairs for the few that change with
        `attempt_pairs`. `every_active`: every PENDING/RUNNING attempt, due or not (still earliest
        next_check_at first): a status pass costs per instance (one list page answers 100 statuses),
        so when one of an instance's executions is due the pass checks all of them.
        """
        due = () if every_active else (A.c.next_check_at <= ts(utc(now)),)
        return self._checks(*due, limit=limit, instance_id=instance_id)

    def due_instances(self, now: datetime | None = None) -> list[str]:
        """(Addition) Instances with at least one PENDING/RUNNING attempt due (next_check_at <= now), sorted."""
        stmt = (
            select(E.c.instance_id)
            .select_from(A.join(E, E.c.id == A.c.execution_id))
            .where(A.c.status.in_(sorted(ACTIVE)), A.c.next_check_at <= ts(utc(now)))
            .distinct()
            .order_by(E.c.instance_id)
        )
        with self._read() as conn:
            return [row[0] for row in conn.execute(stmt)]

    def _checks(
        self, *where: ColumnElement[bool], limit: int | None = None, instance_id: str | None = None
    ) -> list[DueCheck]:
        stmt = (
            select(
                A.c.id, A.c.execution_id, E.c.workflow, E.c.instance_id, A.c.status, A.c.amc_status,
                A.c.amc_execution_id, A.c.created_at, A.c.submitted_at, A.c.status_changed_at, A.c.started_at,
            )
            .select_from(A.join(E, E.c.id == A.c.execution_id))
            .where(A.c.status.in_(sorted(ACTIVE)), not_member(), *where)
        )
        if instance_id is not None:
            stmt = stmt.where(E.c.instance_id == instance_id)
        stmt = stmt.order_by(A.c.next_check_at, A.c.id)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._read() as conn:
            return [DueCheck(*row) for row in conn.execute(stmt)]

    def run_times(self, instance_id: str, per_workflow: int = 20) -> dict[str, list[float]]:
        """(Addition) Each workflow's most recent SUCCESS `execution_time_seconds` on an instance (AMC's
        running time), newest first, at most `per_workflow` each: what the poll plan knows about how
        long a workflow's runs take. One query, for every workflow of the instance.
        """
        return self.run_times_for([instance_id], per_workflow).get(instance_id, {})

    def run_times_for(self, instance_ids: Sequence[str], per_workflow: int = 20
                      ) -> dict[str, dict[str, list[float]]]:
        """`run_times` of many instances in one query (instance -> workflow -> seconds, newest first).

        Why one query: a pass over 150 instances asked 150 times, each a scan of the SUCCESS history,
        and spent most of its time there rather than waiting for AMC.
        """
        if not instance_ids:
            return {}
        ranked = (
            select(
                E.c.instance_id.label("instance_id"),
                E.c.workflow.label("workflow"),
                A.c.execution_time_seconds.label("seconds"),
                func.row_number().over(
                    partition_by=(E.c.instance_id, E.c.workflow), order_by=(A.c.completed_at.desc(), A.c.id.desc())
                ).label("n"),
            )
            .select_from(A.join(E, E.c.id == A.c.execution_id))
            .where(A.c.status == SUCCESS, E.c.instance_id.in_(list(instance_ids)),
                   A.c.execution_time_seconds.is_not(None))
            .subquery()
        )
        stmt = select(ranked.c.instance_id, ranked.c.workflow, ranked.c.seconds).where(
            ranked.c.n <= per_workflow).order_by(ranked.c.instance_id, ranked.c.workflow, ranked.c.n)
        out: dict[str, dict[str, list[float]]] = {}
        with self._read() as conn:
            for instance_id, workflow, seconds in conn.execute(stmt):
                out.setdefault(instance_id, {}).setdefault(workflow, []).append(float(seconds))
        return out

    def attempt_pairs(self, attempt_ids: Iterable[int]) -> dict[int, tuple[ExecutionView, Attempt]]:
        """(Addition) (execution view, attempt) for each given attempt id that exists, keyed by attempt id."""
        ids = sorted(set(attempt_ids))
        out: dict[int, tuple[ExecutionView, Attempt]] = {}
        with self._read() as conn:
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start : start + _IN_CHUNK]
                for row in conn.execute(pairs_select().where(A.c.id.in_(chunk))).mappings():
                    execution, attempt = pair_from(row)
                    out[attempt.id] = (execution, attempt)
        return out

    def active_attempts(self, instance_id: str | None = None) -> list[tuple[ExecutionView, Attempt]]:
        """(Addition) every PENDING/RUNNING attempt, due or not (stuck checks, list-page polling)."""
        stmt = pairs_select().where(A.c.status.in_(sorted(ACTIVE)))
        with self._read() as conn:
            return run_pairs(conn, stmt, instance_id, (A.c.id,), None)

    # ---------------------------------------------------------------------------------- check records

    def record_check(
        self,
        attempt_id: int,
        *,
        now: datetime | None = None,
        next_check_at: datetime | None,
        error: str | None = None,
        error_type: str | None = None,
    ) -> Attempt:
        """Record a status check: when it happened, when the next is due, and the error streak.

        The error count is incremented in SQL (`error_count = error_count + 1`), so overlapping checks
        never lose a count; a successful check resets it to 0 (last_error is kept for the record).
        """
        now = utc(now)
        values: dict[str, Any] = {"last_checked_at": now, "next_check_at": next_check_at}
        if error is not None:
            values.update(error_count=A.c.error_count + 1, last_error=error, error_type=error_type)
        else:
            values["error_count"] = 0
        with self.engine.begin() as conn:
            result = conn.execute(update(A).where(A.c.id == attempt_id).values(**values))
            if result.rowcount != 1:
                raise ExecutionNotFound(f"attempt {attempt_id}")
            return get_attempt(conn, attempt_id)

    def record_checks(
        self,
        checks: Iterable[tuple[int, str, datetime | None]],
        *,
        now: datetime | None = None,
    ) -> int:
        """Record many successful status checks in one transaction; returns how many attempts were updated.

        Each item is (attempt_id, expected status, next_check_at). Same effect per attempt as
        `record_check` without an error (last_checked_at = now, next_check_at, error_count = 0), plus a
        compare-and-set on the status: an attempt another run moved meanwhile is left alone (not
        counted). Why: a poll pass over thousands of unchanged executions would otherwise spend one
        transaction (and a re-read) per execution, which dominates the pass; this is one executemany.
        """
        now = utc(now)
        rows = [
            {"b_id": attempt_id, "b_status": status, "b_next": None if nxt is None else utc(nxt)}
            for attempt_id, status, nxt in checks
        ]
        if not rows:
            return 0
        stmt = (
            update(A)
            .where(A.c.id == bindparam("b_id"), A.c.status == bindparam("b_status"))
            .values(last_checked_at=now, next_check_at=bindparam("b_next", type_=UTCDateTime()), error_count=0)
        )
        with self.engine.begin() as conn:
            result = conn.execute(stmt, rows)
            updated = result.rowcount
        # Some drivers report -1 for executemany; then every row is assumed to have matched.
        return len(rows) if updated is None or updated < 0 else int(updated)
