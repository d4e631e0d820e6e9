"""How the store connects: the engine (SQLite or PostgreSQL), its schema migrations, and the class owning both.

Why SQLite gets special treatment: write transactions start with BEGIN IMMEDIATE (readers use a
deferred BEGIN) so a transaction that reads and then writes never fails half-way on a stale WAL
snapshot; the busy timeout makes concurrent writers wait for each other instead of erroring.

Why no alembic.ini: the migration scripts ship inside the package and are run programmatically, under a
lock, by every process that opens the store (see `upgrade_database`).
"""

import functools
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: pg_advisory_xact_lock key serialising schema upgrades across processes (any fixed 64-bit number).
MIGRATION_LOCK_KEY = 0x414D435F53544F52  # "AMC_STOR"
SQLITE_BUSY_TIMEOUT_MS = 30_000


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


def _use_wal(cursor: Any) -> None:
    """Switch the database to WAL, retrying while another connection holds it.

    Why a loop: SQLite does not call the busy handler for the journal-mode change, so two processes
    opening a fresh database at once could see "database is locked" at once instead of waiting.
    Once the file is in WAL (the usual case), the first read answers 'wal' and nothing is changed.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.01
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy (not the sqlite3 module) decide when transactions begin: see _on_begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            _use_wal(cursor)
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
    """The revision the database is at (None before the first migration)."""
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


# ------------------------------------------------------------------------------------------ the owner


class StoreEngine:
    """Owns the store's engine: opening (and upgrading) the database, read connections, closing.

    Why a base class: each concern of the store (executions, due work, landing, heartbeats, reports)
    is a mixin over this one engine, so they share the connection pool and the read/write conventions
    without holding any state of their own.
    """

    def __init__(self, url: str, *, upgrade: bool = True, **engine_kwargs: Any) -> None:
        self.url = normalize_url(url)
        self.engine = make_engine(self.url, **engine_kwargs)
        if upgrade:
            self.upgrade()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({make_url(self.url).render_as_string(hide_password=True)!r})"

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to `revision` (a no-op read when already at head)."""
        upgrade_database(self.engine, revision)

    def close(self) -> None:
        """Release pooled connections (tests drop their database afterwards)."""
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A read-only connection: on SQLite its transaction is a deferred BEGIN, never the write lock."""
        with self.engine.connect() as conn:
            conn.execution_options(amc_read_only=True)
            yield conn
