"""The store's schema as SQLAlchemy Core tables (the head revision of the migrations in `migrations/`).

Why a type decorator for times: SQLite has no time zone type; values are stored as UTC and read back
as aware UTC datetimes on every backend, so code never compares naive and aware times.
"""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out; refuses naive values (a naive time is a bug)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given to the store: use aware UTC times")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # SQLite stores text; a fixed-width naive UTC string keeps lexicographic order == time order.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = MetaData()

amc_executions = Table(
    "amc_executions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("workflow", String(128), nullable=False),
    Column("instance_id", String(128), nullable=False),
    Column("partition_key", String(64), nullable=False),
    Column("window_start", UTCDateTime(), nullable=False),
    Column("window_end", UTCDateTime(), nullable=False),
    Column("requested_at", UTCDateTime(), nullable=False),
    Column("live", Boolean(), nullable=False, server_default=text("true")),
    Column(
        "current_attempt_id",
        Integer,
        ForeignKey("amc_execution_attempts.id", use_alter=True, name="fk_amc_executions_current_attempt"),
        nullable=True,
    ),
    Column("landed_at", UTCDateTime(), nullable=True),
    Column("rows", BigInteger, nullable=True),
    Column("bytes", BigInteger, nullable=True),
    Column("uri", Text, nullable=True),
    Column("land_attempts", Integer, nullable=False, server_default=text("0")),
    Column("land_error", Text, nullable=True),
    Column("next_land_at", UTCDateTime(), nullable=True),
    Column(
        "landed_attempt_id",
        Integer,
        ForeignKey("amc_execution_attempts.id", use_alter=True, name="fk_amc_executions_landed_attempt"),
        nullable=True,
    ),
)

# One live execution per (workflow, window): the database, not our code, refuses a duplicate.
Index(
    "uq_amc_executions_live_window",
    amc_executions.c.workflow,
    amc_executions.c.partition_key,
    unique=True,
    sqlite_where=text("live"),
    postgresql_where=text("live"),
)
Index("ix_amc_executions_instance_requested", amc_executions.c.instance_id, amc_executions.c.requested_at)

amc_execution_attempts = Table(
    "amc_execution_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "execution_id",
        Integer,
        ForeignKey("amc_executions.id", name="fk_amc_execution_attempts_execution"),
        nullable=False,
    ),
    Column("attempt", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("client_token", String(64), nullable=False),
    Column("amc_execution_id", String(128), nullable=True),
    Column("amc_request_id", String(128), nullable=True),
    Column("amc_status", String(32), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("submit_started_at", UTCDateTime(), nullable=True),
    Column("submitted_at", UTCDateTime(), nullable=True),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("completed_at", UTCDateTime(), nullable=True),
    Column("status_changed_at", UTCDateTime(), nullable=True),
    Column("next_check_at", UTCDateTime(), nullable=True),
    Column("last_checked_at", UTCDateTime(), nullable=True),
    Column("error_count", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text, nullable=True),
    Column("error_type", String(32), nullable=True),
    Column("retry_count", Integer, nullable=False, server_default=text("0")),
    Column("failure_reason", Text, nullable=True),
    Column("execution_time_seconds", Float, nullable=True),
    Column("output_columns", Text, nullable=True),
    # Revision 0005: pipeline (NULL) | schedule | external; see store/migrations/versions/0005_execution_origin.py.
    Column("origin", String(16), nullable=True),
    # Revision 0006: packing. The pack's leading attempt (the one AMC knows) has its own id here; each
    # other window of the pack points at it; NULL for an attempt that is not part of a pack.
    Column("pack_leader_id", Integer, nullable=True),
)

Index("uq_amc_execution_attempts_client_token", amc_execution_attempts.c.client_token, unique=True)
Index("uq_amc_execution_attempts_amc_id", amc_execution_attempts.c.amc_execution_id, unique=True)
Index(
    "uq_amc_execution_attempts_execution_attempt",
    amc_execution_attempts.c.execution_id,
    amc_execution_attempts.c.attempt,
    unique=True,
)
Index(
    "ix_amc_execution_attempts_status_next_check",
    amc_execution_attempts.c.status,
    amc_execution_attempts.c.next_check_at,
)
Index(
    "ix_amc_execution_attempts_status_submitted",
    amc_execution_attempts.c.status,
    amc_execution_attempts.c.submitted_at,
)
# Revision 0002: serves the sensor's due_summary counts (QUEUED split by submit_started_at) from the index.
Index(
    "ix_amc_execution_attempts_due",
    amc_execution_attempts.c.status,
    amc_execution_attempts.c.submit_started_at,
    amc_execution_attempts.c.next_check_at,
)
# Revision 0002: the quota count (submitted_at >= since / submit_started_at >= since) as index range scans.
Index("ix_amc_execution_attempts_submitted_at", amc_execution_attempts.c.submitted_at)
Index("ix_amc_execution_attempts_submit_started_at", amc_execution_attempts.c.submit_started_at)

# Revision 0006: the members of a pack, read at every status move of a leader.
Index("ix_amc_execution_attempts_pack_leader", amc_execution_attempts.c.pack_leader_id)

#: Attempt columns a caller may set through transition()/update_attempt() (not keys, not status).
ATTEMPT_WRITABLE: frozenset[str] = frozenset(
    c.name for c in amc_execution_attempts.c if c.name not in {"id", "execution_id", "attempt", "status"}
)

# Revision 0003: when the monitor last checked AMC successfully, for the health check and `doctor`.
amc_monitor_heartbeats = Table(
    "amc_monitor_heartbeats",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("last_attempt_at", UTCDateTime(), nullable=False),
    Column("last_ok_at", UTCDateTime(), nullable=True),
    Column("ok", Boolean, nullable=False),
    Column("detail", Text, nullable=True),
)

# Revision 0004: what each notification target was (or still has to be) told, one row per (target, event).
amc_notifications = Table(
    "amc_notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("target", String(64), nullable=False),
    Column("event_key", String(255), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("workflow", String(128), nullable=True),
    Column("partition_key", String(64), nullable=True),
    Column("payload", Text, nullable=False),
    Column("first_seen_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime(), nullable=True),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text, nullable=True),
    Column("last_try_at", UTCDateTime(), nullable=True),
    Column("next_try_at", UTCDateTime(), nullable=True),
    Column("resolved_at", UTCDateTime(), nullable=True),
)
# Exactly one row (so one message) per event per target, whoever evaluates it and however often.
Index("uq_amc_notifications_target_event", amc_notifications.c.target, amc_notifications.c.event_key, unique=True)
Index("ix_amc_notifications_pending", amc_notifications.c.sent_at, amc_notifications.c.next_try_at)
