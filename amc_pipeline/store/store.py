"""The execution store: every execution and attempt, and the only code that changes their status.

Why it is built this way (DESIGN.md "Scale"): several monitor runs, sensors and asset runs may touch the
same execution at once, possibly on different hosts. There are no in-process locks: every status write
is a compare-and-set in one UPDATE (`... WHERE id = ? AND status = ?`), duplicates are refused by unique
indexes, and each method is one short database transaction (`engine.begin()`).

On SQLite, write transactions start with BEGIN IMMEDIATE (readers use a deferred BEGIN) so a
transaction that reads and then writes never fails half-way on a stale WAL snapshot; the busy timeout
makes concurrent writers wait for each other instead of erroring.
"""

import functools
import json
import logging
import secrets
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Connection,
    Engine,
    Select,
    and_,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from amc_pipeline.store.records import Attempt, DueSummary, ExecutionView
from amc_pipeline.store.states import (
    ACTIVE,
    ALLOWED,
    CANCELLED,
    PENDING,
    QUEUED,
    RUNNING,
    SUCCESS,
    TERMINAL,
    can_transition,
)
from amc_pipeline.store.tables import (
    ATTEMPT_WRITABLE,
    UTCDateTime,
    amc_execution_attempts,
    amc_executions,
    amc_monitor_heartbeats,
)

logger = logging.getLogger(__name__)

E = amc_executions
A = amc_execution_attempts
#: The execution's current attempt (a second alias when a query also selects another attempt).
CUR = amc_execution_attempts.alias("cur")

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: pg_advisory_xact_lock key serialising schema upgrades across processes (any fixed 64-bit number).
MIGRATION_LOCK_KEY = 0x414D435F53544F52  # "AMC_STOR"
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: How many times enqueue retries after losing a unique-index race before giving up.
_ENQUEUE_RETRIES = 5
_DUE_IDS = 20


class ExecutionNotFound(KeyError):
    """No execution (or attempt) with that id."""


# ----------------------------------------------------------------------------------------------- engine


def normalize_url(url: str) -> str:
    """`postgresql://` and `postgres://` -> the psycopg2 driver SQLAlchemy 2.0 ships support for."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine configured for the store: SQLite WAL + busy timeout + foreign keys, or psycopg2."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        connect_args.update(kwargs.pop("connect_args", {}))
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy (not the sqlite3 module) decide when transactions begin: see _on_begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("amc_read_only"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


# ------------------------------------------------------------------------------------------- migrations


def alembic_config(connection: Connection | None = None) -> Config:
    """An in-memory Alembic config pointing at the packaged scripts (no alembic.ini anywhere)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def head_revision() -> str:
    """The newest revision shipped with this code (the scripts never change while it runs)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade_database(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision`, safely when several processes start at once.

    PostgreSQL: a transaction-scoped advisory lock serialises upgraders; the second one finds the
    schema at head and does nothing. SQLite: the write transaction (BEGIN IMMEDIATE) plus the busy
    timeout does the same.
    """
    if revision == "head":
        # Fast path (every store init, e.g. each sensor tick): no lock, no write when already at head.
        with engine.connect() as conn:
            conn.execution_options(amc_read_only=True)
            if MigrationContext.configure(conn).get_current_revision() == head_revision():
                return
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        command.upgrade(alembic_config(conn), revision)


# ---------------------------------------------------------------------------------------------- helpers


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"naive datetime {now.isoformat()}: the store takes aware UTC times")
    return now.astimezone(UTC)


def _ts(value: datetime) -> ColumnElement[Any]:
    """A bound time typed like the columns (so SQLite stores/compares the same text format)."""
    return literal(value, UTCDateTime())


def _new_token() -> str:
    return secrets.token_hex(6)


def _encode_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - ATTEMPT_WRITABLE
    if unknown:
        raise ValueError(f"not writable attempt fields: {sorted(unknown)}")
    values = dict(fields)
    if "output_columns" in values:
        values["output_columns"] = _encode_columns(values["output_columns"])
    return values


def _encode_columns(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    items = [asdict(v) if is_dataclass(v) and not isinstance(v, type) else v for v in value]
    return json.dumps(items, default=str)


def _labelled(table: Any, prefix: str) -> list[Any]:
    return [c.label(prefix + c.name) for c in table.c]


def _view_columns() -> list[Any]:
    return _labelled(E, "e_") + _labelled(CUR, "c_")


def _view_from(row: Mapping[str, Any]) -> ExecutionView:
    attempt = Attempt.from_mapping(row, "c_") if row["c_id"] is not None else None
    return ExecutionView.from_mapping(row, "e_", attempt)


def _views_select() -> Select[Any]:
    return select(*_view_columns()).select_from(E.outerjoin(CUR, CUR.c.id == E.c.current_attempt_id))


def _pairs_select() -> Select[Any]:
    """(execution view, a given attempt A) rows: A joined to its execution and that execution's current."""
    return select(*_view_columns(), *_labelled(A, "a_")).select_from(
        A.join(E, E.c.id == A.c.execution_id).outerjoin(CUR, CUR.c.id == E.c.current_attempt_id)
    )


def _pair_from(row: Mapping[str, Any]) -> tuple[ExecutionView, Attempt]:
    return _view_from(row), Attempt.from_mapping(row, "a_")


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


#: Ids per IN (...) list: well under SQLite's bound-parameter limit.
_IN_CHUNK = 500


# ------------------------------------------------------------------------------------------------ store


class ExecutionStore:
    """All reads and writes of executions and attempts. Safe to share between threads and processes."""

    def __init__(self, url: str, *, upgrade: bool = True, **engine_kwargs: Any) -> None:
        self.url = normalize_url(url)
        self.engine = make_engine(self.url, **engine_kwargs)
        if upgrade:
            self.upgrade()

    def __repr__(self) -> str:
        return f"ExecutionStore({make_url(self.url).render_as_string(hide_password=True)!r})"

    def upgrade(self, revision: str = "head") -> None:
        upgrade_database(self.engine, revision)

    def close(self) -> None:
        """Release pooled connections (tests drop their database afterwards)."""
        self.engine.dispose()

    def __enter__(self) -> "ExecutionStore":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn.execution_options(amc_read_only=True)
            yield conn

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
        exists at AMC); an active old attempt is the caller's to cancel at AMC.
        """
        now = _utc(now)
        _utc(window_start)
        _utc(window_end)
        for _ in range(_ENQUEUE_RETRIES):
            try:
                with self.engine.begin() as conn:
                    existing = self._live_row(conn, workflow, partition_key)
                    if existing is not None:
                        if not force_new:
                            return _view_from(existing), False
                        self._supersede(conn, existing, now)
                    execution_id = self._insert_execution(
                        conn, workflow, instance_id, partition_key, window_start, window_end, now
                    )
                    return self._get(conn, execution_id), True
            except IntegrityError as exc:
                # Another process inserted the live row first (or, astronomically, a token clashed).
                logger.info("enqueue %s/%s lost a race, re-reading: %s", workflow, partition_key, exc.orig)
                with self._read() as conn:
                    existing = self._live_row(conn, workflow, partition_key)
                if existing is not None:
                    return _view_from(existing), False
        raise RuntimeError(f"enqueue {workflow}/{partition_key}: gave up after {_ENQUEUE_RETRIES} races")

    def _live_row(self, conn: Connection, workflow: str, partition_key: str) -> Mapping[str, Any] | None:
        stmt = _views_select().where(E.c.workflow == workflow, E.c.partition_key == partition_key, E.c.live)
        return conn.execute(stmt).mappings().first()

    def _supersede(self, conn: Connection, existing: Mapping[str, Any], now: datetime) -> None:
        conn.execute(update(E).where(E.c.id == existing["e_id"], E.c.live).values(live=False))
        if existing["c_id"] is not None:
            conn.execute(
                update(A)
                .where(A.c.id == existing["c_id"], A.c.status == QUEUED, A.c.submit_started_at.is_(None))
                .values(
                    status=CANCELLED,
                    status_changed_at=now,
                    completed_at=now,
                    last_error="superseded by a forced re-run before submit",
                )
            )

    def _insert_execution(
        self,
        conn: Connection,
        workflow: str,
        instance_id: str,
        partition_key: str,
        window_start: datetime,
        window_end: datetime,
        now: datetime,
    ) -> int:
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
        attempt_id = self._insert_attempt(conn, execution_id, 1, 0, now, now)
        conn.execute(update(E).where(E.c.id == execution_id).values(current_attempt_id=attempt_id))
        return execution_id

    @staticmethod
    def _insert_attempt(
        conn: Connection,
        execution_id: int,
        number: int,
        retry_count: int,
        now: datetime,
        next_check_at: datetime,
    ) -> int:
        return conn.execute(
            A.insert()
            .values(
                execution_id=execution_id,
                attempt=number,
                status=QUEUED,
                client_token=_new_token(),
                created_at=now,
                status_changed_at=now,
                next_check_at=next_check_at,
                error_count=0,
                retry_count=retry_count,
            )
            .returning(A.c.id)
        ).scalar_one()

    # -------------------------------------------------------------------------------------------- reads

    def _get(self, conn: Connection, execution_id: int) -> ExecutionView:
        row = conn.execute(_views_select().where(E.c.id == execution_id)).mappings().first()
        if row is None:
            raise ExecutionNotFound(f"execution {execution_id}")
        return _view_from(row)

    def get(self, execution_id: int) -> ExecutionView:
        with self._read() as conn:
            return self._get(conn, execution_id)

    def get_live(self, workflow: str, partition_key: str) -> ExecutionView | None:
        with self._read() as conn:
            row = self._live_row(conn, workflow, partition_key)
        return _view_from(row) if row is not None else None

    def _get_attempt(self, conn: Connection, attempt_id: int) -> Attempt:
        row = conn.execute(select(A).where(A.c.id == attempt_id)).mappings().first()
        if row is None:
            raise ExecutionNotFound(f"attempt {attempt_id}")
        return Attempt.from_mapping(row)

    def get_attempt(self, attempt_id: int) -> Attempt:
        with self._read() as conn:
            return self._get_attempt(conn, attempt_id)

    def attempts_for(self, execution_id: int) -> list[Attempt]:
        """All attempts of an execution, attempt 1 first."""
        with self._read() as conn:
            rows = conn.execute(select(A).where(A.c.execution_id == execution_id).order_by(A.c.attempt)).mappings()
            return [Attempt.from_mapping(r) for r in rows]

    def get_by_amc_id(self, amc_execution_id: str) -> tuple[ExecutionView, Attempt] | None:
        """The attempt AMC knows as `amc_execution_id`, with its execution (addition: adoption, debugging)."""
        with self._read() as conn:
            row = conn.execute(_pairs_select().where(A.c.amc_execution_id == amc_execution_id)).mappings().first()
        return _pair_from(row) if row is not None else None

    # ------------------------------------------------------------------------------------------- writes

    def transition(
        self, attempt_id: int, from_status: str, to_status: str, *, now: datetime | None = None, **fields: Any
    ) -> bool:
        """Compare-and-set the attempt's status `from_status -> to_status` (one UPDATE).

        Returns False, changing nothing, when the move is not allowed (logged with both states) or when
        the attempt is no longer in `from_status` (someone else moved it first).
        """
        if not can_transition(from_status, to_status):
            logger.warning(
                "refused transition of attempt %s: %s -> %s is not allowed (allowed from %s: %s)",
                attempt_id,
                from_status,
                to_status,
                from_status,
                sorted(ALLOWED.get(from_status, ())),
            )
            return False
        now = _utc(now)
        values: dict[str, Any] = _encode_fields(fields)
        values["status"] = to_status
        values.setdefault("status_changed_at", now)
        if to_status in TERMINAL:
            values.setdefault("completed_at", now)
        if to_status == RUNNING and "started_at" not in values:
            values["started_at"] = func.coalesce(A.c.started_at, _ts(now))
        if from_status == QUEUED and to_status in ACTIVE and "submitted_at" not in values:
            values["submitted_at"] = func.coalesce(A.c.submitted_at, _ts(now))
        with self.engine.begin() as conn:
            result = conn.execute(update(A).where(A.c.id == attempt_id, A.c.status == from_status).values(**values))
            changed = result.rowcount == 1
        if changed:
            logger.info("attempt %s: %s -> %s", attempt_id, from_status, to_status)
        else:
            logger.info(
                "attempt %s: %s -> %s not applied (status changed meanwhile)",
                attempt_id,
                from_status,
                to_status,
            )
        return changed

    def update_attempt(self, attempt_id: int, *, expect_status: str | None = None, **fields: Any) -> bool:
        """Set attempt columns without changing the status (CAS on status when `expect_status` is given)."""
        if "status" in fields:
            raise ValueError("update_attempt does not change the status: use transition()")
        values = _encode_fields(fields)
        if not values:
            raise ValueError("update_attempt needs at least one field")
        stmt = update(A).where(A.c.id == attempt_id)
        if expect_status is not None:
            stmt = stmt.where(A.c.status == expect_status)
        with self.engine.begin() as conn:
            return conn.execute(stmt.values(**values)).rowcount == 1

    def begin_submit(
        self, attempt_id: int, now: datetime | None = None, *, next_check_at: datetime | None = None
    ) -> bool:
        """Claim the attempt for a create call: CAS QUEUED with submit_started_at NULL -> set it.

        Exactly one caller wins; after this, an attempt still QUEUED without an AMC id is an ambiguous
        create that must be resolved by listing the instance's executions, never by a second POST.
        `next_check_at` (addition) optionally delays when the sensor sees it as due for resolution.
        """
        now = _utc(now)
        values: dict[str, Any] = {"submit_started_at": now}
        if next_check_at is not None:
            values["next_check_at"] = _utc(next_check_at)
        with self.engine.begin() as conn:
            result = conn.execute(
                update(A)
                .where(A.c.id == attempt_id, A.c.status == QUEUED, A.c.submit_started_at.is_(None))
                .values(**values)
            )
            return result.rowcount == 1

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
        now = _utc(now)
        values: dict[str, Any] = {"last_checked_at": now, "next_check_at": next_check_at}
        if error is not None:
            values.update(error_count=A.c.error_count + 1, last_error=error, error_type=error_type)
        else:
            values["error_count"] = 0
        with self.engine.begin() as conn:
            result = conn.execute(update(A).where(A.c.id == attempt_id).values(**values))
            if result.rowcount != 1:
                raise ExecutionNotFound(f"attempt {attempt_id}")
            return self._get_attempt(conn, attempt_id)

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
        now = _utc(now)
        rows = [
            {"b_id": attempt_id, "b_status": status, "b_next": None if nxt is None else _utc(nxt)}
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
        now = _utc(now)

        class _Lost(Exception):
            pass

        try:
            with self.engine.begin() as conn:
                previous = self._get_attempt(conn, previous_attempt_id)
                if previous.execution_id != execution_id:
                    raise ValueError(f"attempt {previous_attempt_id} is not of execution {execution_id}")
                number = conn.execute(
                    select(func.max(A.c.attempt)).where(A.c.execution_id == execution_id)
                ).scalar_one()
                attempt_id = self._insert_attempt(
                    conn, execution_id, number + 1, previous.retry_count + 1, now, _utc(next_check_at)
                )
                result = conn.execute(
                    update(E)
                    .where(E.c.id == execution_id, E.c.current_attempt_id == previous_attempt_id)
                    .values(current_attempt_id=attempt_id, next_land_at=None, land_error=None)
                )
                if result.rowcount != 1:
                    raise _Lost
                return self._get_attempt(conn, attempt_id)
        except _Lost:
            return None
        except IntegrityError:
            # A concurrent new_attempt took the same attempt number: it won the CAS.
            return None

    # -------------------------------------------------------------------------------- monitor queries

    def due_summary(self, now: datetime | None = None) -> DueSummary:
        """Counts for the monitor sensor, from the indexes only (no rows loaded), in one read transaction.

        submit_due: QUEUED, submit not started, next_check_at <= now. ambiguous: QUEUED with a submit
        started (an unresolved or in-flight create), next_check_at <= now. poll_due: PENDING/RUNNING with
        next_check_at <= now. next_due_at: the earliest next_check_at of any QUEUED/PENDING/RUNNING attempt
        (past or future). oldest_due_ids: up to 20 due attempt ids, earliest next_check_at first.
        newest_due_at: the latest next_check_at of any due QUEUED/PENDING/RUNNING attempt.
        """
        now = _utc(now)
        due = A.c.next_check_at <= _ts(now)

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
            select(func.max(A.c.next_check_at)).where(A.c.status.in_((QUEUED, PENDING, RUNNING)), due)
            .scalar_subquery().label("due_max"),
        )
        due_ids: list[tuple[datetime, int]] = []
        with self._read() as conn:
            row = conn.execute(counts).mappings().one()
            for status in (QUEUED, PENDING, RUNNING):
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

    def queued_for_submit(
        self, instance_id: str, now: datetime | None = None, limit: int = 100
    ) -> list[tuple[ExecutionView, Attempt]]:
        """QUEUED, never-submitted current attempts of live executions that are due, oldest request first."""
        now = _utc(now)
        stmt = (
            _pairs_select()
            .where(
                A.c.status == QUEUED,
                A.c.submit_started_at.is_(None),
                A.c.next_check_at <= _ts(now),
                E.c.current_attempt_id == A.c.id,
                E.c.live,
                E.c.instance_id == instance_id,
            )
            .order_by(E.c.requested_at, E.c.id)
            .limit(limit)
        )
        with self._read() as conn:
            return [_pair_from(r) for r in conn.execute(stmt).mappings()]

    def ambiguous_attempts(
        self, instance_id: str | None = None, now: datetime | None = None, limit: int | None = None
    ) -> list[tuple[ExecutionView, Attempt]]:
        """(Addition) QUEUED attempts whose create started but has no AMC id: resolve by listing.

        `now` given: only those due (next_check_at <= now); None: all of them. Oldest submit first.
        """
        stmt = _pairs_select().where(
            A.c.status == QUEUED, A.c.submit_started_at.is_not(None), A.c.amc_execution_id.is_(None)
        )
        if now is not None:
            stmt = stmt.where(A.c.next_check_at <= _ts(_utc(now)))
        return self._pairs(stmt, instance_id, (A.c.submit_started_at, A.c.id), limit)

    def active_count(self, instance_id: str) -> int:
        """Attempts holding (or maybe holding) an AMC slot: PENDING/RUNNING, or QUEUED with submit started."""
        stmt = (
            select(func.count())
            .select_from(A.join(E, E.c.id == A.c.execution_id))
            .where(
                E.c.instance_id == instance_id,
                or_(
                    A.c.status.in_(sorted(ACTIVE)),
                    and_(A.c.status == QUEUED, A.c.submit_started_at.is_not(None)),
                ),
            )
        )
        with self._read() as conn:
            return int(conn.execute(stmt).scalar_one())

    def submitted_since(self, instance_id: str, since: datetime) -> int:
        """Executions counted against the daily quota since `since`: submitted, or a create started
        without an AMC id (it may exist at AMC: count it, never exceed the quota)."""
        since = _utc(since)
        stmt = (
            select(func.count())
            .select_from(A.join(E, E.c.id == A.c.execution_id))
            .where(
                E.c.instance_id == instance_id,
                or_(
                    A.c.submitted_at >= _ts(since),
                    and_(
                        A.c.submitted_at.is_(None),
                        A.c.submit_started_at >= _ts(since),
                        A.c.amc_execution_id.is_(None),
                    ),
                ),
            )
        )
        with self._read() as conn:
            return int(conn.execute(stmt).scalar_one())

    def due_for_poll(
        self, now: datetime | None = None, limit: int | None = None, instance_id: str | None = None
    ) -> list[tuple[ExecutionView, Attempt]]:
        """PENDING/RUNNING attempts with next_check_at <= now, earliest due first (any execution, live or not:
        a superseded execution still running at AMC is still watched)."""
        now = _utc(now)
        stmt = _pairs_select().where(A.c.status.in_(sorted(ACTIVE)), A.c.next_check_at <= _ts(now))
        return self._pairs(stmt, instance_id, (A.c.next_check_at, A.c.id), limit)

    def _pairs(
        self, stmt: Select[Any], instance_id: str | None, order_by: tuple[Any, ...], limit: int | None
    ) -> list[tuple[ExecutionView, Attempt]]:
        """Run a (execution, attempt) query, optionally for one instance, ordered and limited."""
        if instance_id is not None:
            stmt = stmt.where(E.c.instance_id == instance_id)
        stmt = stmt.order_by(*order_by)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._read() as conn:
            return [_pair_from(r) for r in conn.execute(stmt).mappings()]

    def due_checks(
        self, now: datetime | None = None, limit: int | None = None, instance_id: str | None = None
    ) -> list[DueCheck]:
        """(Addition) Same attempts and order as `due_for_poll`, as light `DueCheck` tuples.

        Why: a poll pass over thousands of due attempts only needs ids, statuses and three times for
        most of them; building the full (ExecutionView, Attempt) pairs (some 25 datetime columns a row)
        cost more than the pass's AMC requests. Load full pairs for the few that change with
        `attempt_pairs`.
        """
        now = _utc(now)
        stmt = (
            select(
                A.c.id, A.c.execution_id, E.c.workflow, E.c.instance_id, A.c.status, A.c.amc_status,
                A.c.amc_execution_id, A.c.created_at, A.c.submitted_at, A.c.status_changed_at,
            )
            .select_from(A.join(E, E.c.id == A.c.execution_id))
            .where(A.c.status.in_(sorted(ACTIVE)), A.c.next_check_at <= _ts(now))
        )
        if instance_id is not None:
            stmt = stmt.where(E.c.instance_id == instance_id)
        stmt = stmt.order_by(A.c.next_check_at, A.c.id)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._read() as conn:
            return [DueCheck(*row) for row in conn.execute(stmt)]

    def attempt_pairs(self, attempt_ids: Iterable[int]) -> dict[int, tuple[ExecutionView, Attempt]]:
        """(Addition) (execution view, attempt) for each given attempt id that exists, keyed by attempt id."""
        ids = sorted(set(attempt_ids))
        out: dict[int, tuple[ExecutionView, Attempt]] = {}
        with self._read() as conn:
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start : start + _IN_CHUNK]
                for row in conn.execute(_pairs_select().where(A.c.id.in_(chunk))).mappings():
                    execution, attempt = _pair_from(row)
                    out[attempt.id] = (execution, attempt)
        return out

    def active_attempts(self, instance_id: str | None = None) -> list[tuple[ExecutionView, Attempt]]:
        """(Addition) every PENDING/RUNNING attempt, due or not (stuck checks, list-page polling)."""
        stmt = _pairs_select().where(A.c.status.in_(sorted(ACTIVE)))
        if instance_id is not None:
            stmt = stmt.where(E.c.instance_id == instance_id)
        with self._read() as conn:
            return [_pair_from(r) for r in conn.execute(stmt.order_by(A.c.id)).mappings()]

    # ---------------------------------------------------------------------------------------- landing

    def landable(
        self, now: datetime | None = None, limit: int = 100, *, max_land_attempts: int | None = None
    ) -> list[ExecutionView]:
        """Live executions whose current attempt SUCCEEDED and has not landed, not backing off; oldest first.

        (live, current attempt SUCCESS, landed_attempt_id != current attempt, next_land_at null or <= now;
        with `max_land_attempts`, only those that have not used them up, so given-up landings do not
        crowd out the rest.)
        """
        now = _utc(now)
        stmt = (
            _views_select()
            .where(
                E.c.live,
                CUR.c.status == SUCCESS,
                or_(E.c.landed_attempt_id.is_(None), E.c.landed_attempt_id != E.c.current_attempt_id),
                or_(E.c.next_land_at.is_(None), E.c.next_land_at <= _ts(now)),
            )
            .order_by(E.c.requested_at, E.c.id)
            .limit(limit)
        )
        if max_land_attempts is not None:
            stmt = stmt.where(E.c.land_attempts < max_land_attempts)
        with self._read() as conn:
            return [_view_from(r) for r in conn.execute(stmt).mappings()]

    def begin_landing(self, execution_id: int, *, lease_until: datetime | None = None) -> int:
        """Count a landing attempt (atomic increment) and return its number, for unique run keys.

        `lease_until` hides the execution from `landable` while this landing runs; if the landing's
        process dies without recording anything, the lease expires and the landing sensor tries again.
        """
        values: dict[str, Any] = {"land_attempts": E.c.land_attempts + 1}
        if lease_until is not None:
            values["next_land_at"] = _utc(lease_until)
        return self._update_landing(execution_id, values)

    def _update_landing(self, execution_id: int, values: dict[str, Any]) -> int:
        """Write landing fields of one execution and return its land_attempts, in one transaction."""
        with self.engine.begin() as conn:
            result = conn.execute(update(E).where(E.c.id == execution_id).values(**values))
            if result.rowcount != 1:
                raise ExecutionNotFound(f"execution {execution_id}")
            return int(conn.execute(select(E.c.land_attempts).where(E.c.id == execution_id)).scalar_one())

    def record_landed(
        self,
        execution_id: int,
        attempt_id: int,
        *,
        rows: int,
        bytes: int,
        uri: str,
        now: datetime | None = None,
    ) -> bool:
        """Record that `attempt_id`'s result landed. CAS: only while it is still the current attempt.

        Returns False (nothing written) if the execution moved on to another attempt meanwhile.
        """
        now = _utc(now)
        with self.engine.begin() as conn:
            result = conn.execute(
                update(E)
                .where(E.c.id == execution_id, E.c.current_attempt_id == attempt_id)
                .values(
                    landed_at=now,
                    rows=rows,
                    bytes=bytes,
                    uri=uri,
                    landed_attempt_id=attempt_id,
                    land_error=None,
                    next_land_at=None,
                )
            )
            return result.rowcount == 1

    def record_land_failure(
        self, execution_id: int, *, error: str, next_land_at: datetime | None, now: datetime | None = None
    ) -> int:
        """Record a failed landing and when to try again; returns land_attempts so far."""
        _utc(now)
        return self._update_landing(execution_id, {"land_error": error, "next_land_at": next_land_at})

    # ---------------------------------------------------------------------------------- listings, misc

    def list_executions(
        self,
        *,
        workflow: str | None = None,
        status: str | Iterable[str] | None = None,
        instance_id: str | None = None,
        live_only: bool = True,
        limit: int = 500,
    ) -> list[ExecutionView]:
        """Executions, newest request first, filtered by workflow, current status, instance, liveness."""
        stmt = _views_select()
        if workflow is not None:
            stmt = stmt.where(E.c.workflow == workflow)
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            stmt = stmt.where(CUR.c.status.in_(statuses))
        if instance_id is not None:
            stmt = stmt.where(E.c.instance_id == instance_id)
        if live_only:
            stmt = stmt.where(E.c.live)
        stmt = stmt.order_by(E.c.requested_at.desc(), E.c.id.desc()).limit(limit)
        with self._read() as conn:
            return [_view_from(r) for r in conn.execute(stmt).mappings()]

    def amc_ids_for(self, instance_id: str) -> set[str]:
        """Every AMC execution id we know on this instance (any attempt, live or not): adoption checks."""
        stmt = (
            select(A.c.amc_execution_id)
            .select_from(A.join(E, E.c.id == A.c.execution_id))
            .where(E.c.instance_id == instance_id, A.c.amc_execution_id.is_not(None))
        )
        with self._read() as conn:
            return {r[0] for r in conn.execute(stmt)}

    # --- health ---------------------------------------------------------------------------------

    def record_heartbeat(self, name: str, *, ok: bool, detail: str | None = None, now: datetime | None = None) -> None:
        """Record one monitor pass: `ok` when AMC answered. Upsert by name, race-safe across processes."""
        now = _utc(now)
        H = amc_monitor_heartbeats
        values: dict[str, Any] = {"last_attempt_at": now, "ok": ok, "detail": (detail or "")[:2000]}
        if ok:
            values["last_ok_at"] = now
        for _ in range(2):
            with self.engine.begin() as conn:
                if conn.execute(update(H).where(H.c.name == name).values(**values)).rowcount:
                    return
                try:
                    with conn.begin_nested():
                        conn.execute(insert(H).values(name=name, **values))
                    return
                except IntegrityError:
                    continue

    def heartbeat(self, name: str) -> dict[str, Any] | None:
        H = amc_monitor_heartbeats
        with self._read() as conn:
            row = conn.execute(select(H).where(H.c.name == name)).mappings().first()
        return dict(row) if row else None

    def attempts_since(self, since: datetime, *, workflow: str | None = None) -> list[tuple[ExecutionView, Attempt]]:
        """Every attempt created since `since` with its execution (for metrics), oldest first."""
        stmt = _pairs_select().where(A.c.created_at >= _ts(_utc(since)))
        if workflow is not None:
            stmt = stmt.where(E.c.workflow == workflow)
        stmt = stmt.order_by(A.c.created_at, A.c.id)
        with self._read() as conn:
            return [_pair_from(r) for r in conn.execute(stmt).mappings()]
