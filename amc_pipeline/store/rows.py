"""Building blocks every part of the store shares: table aliases, time binding, and rows -> views.

Why in one module: the (execution, current attempt) join and its column labels must be identical in
every query, or `ExecutionView.from_mapping` would read the wrong columns; likewise every bound time
must be typed like the columns so SQLite compares the same text format.
"""

import json
import secrets
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Select, literal, select
from sqlalchemy.sql.elements import ColumnElement

from amc_pipeline.store.records import Attempt, ExecutionView
from amc_pipeline.store.tables import ATTEMPT_WRITABLE, UTCDateTime, amc_execution_attempts, amc_executions

E = amc_executions
A = amc_execution_attempts
#: The execution's current attempt (a second alias when a query also selects another attempt).
CUR = amc_execution_attempts.alias("cur")


class ExecutionNotFound(KeyError):
    """No execution (or attempt) with that id."""


# ------------------------------------------------------------------------------------------------ times


def utc(now: datetime | None) -> datetime:
    """`now` as aware UTC (the current time when None); a naive time is refused, it is always a bug."""
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"naive datetime {now.isoformat()}: the store takes aware UTC times")
    return now.astimezone(UTC)


def ts(value: datetime) -> ColumnElement[Any]:
    """A bound time typed like the columns (so SQLite stores/compares the same text format)."""
    return literal(value, UTCDateTime())


# ---------------------------------------------------------------------------------------- attempt writes


def new_token() -> str:
    """A fresh client token for a new attempt (unique index: a clash fails the insert, never reuses)."""
    return secrets.token_hex(6)


def encode_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Caller-given attempt columns as UPDATE values: only writable columns, output_columns as JSON text."""
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


# ------------------------------------------------------------------------------------------ rows -> views


def _labelled(table: Any, prefix: str) -> list[Any]:
    return [c.label(prefix + c.name) for c in table.c]


def _view_columns() -> list[Any]:
    return _labelled(E, "e_") + _labelled(CUR, "c_")


def view_from(row: Mapping[str, Any]) -> ExecutionView:
    """An `ExecutionView` from a `views_select`/`pairs_select` row."""
    attempt = Attempt.from_mapping(row, "c_") if row["c_id"] is not None else None
    return ExecutionView.from_mapping(row, "e_", attempt)


def views_select() -> Select[Any]:
    """(execution, its current attempt) rows, labelled e_* and c_*: read them with `view_from`."""
    return select(*_view_columns()).select_from(E.outerjoin(CUR, CUR.c.id == E.c.current_attempt_id))


def pairs_select() -> Select[Any]:
    """(execution view, a given attempt A) rows: A joined to its execution and that execution's current."""
    return select(*_view_columns(), *_labelled(A, "a_")).select_from(
        A.join(E, E.c.id == A.c.execution_id).outerjoin(CUR, CUR.c.id == E.c.current_attempt_id)
    )


def pair_from(row: Mapping[str, Any]) -> tuple[ExecutionView, Attempt]:
    """(execution view, attempt A) from a `pairs_select` row."""
    return view_from(row), Attempt.from_mapping(row, "a_")


def run_pairs(
    conn: Connection, stmt: Select[Any], instance_id: str | None, order_by: tuple[Any, ...], limit: int | None
) -> list[tuple[ExecutionView, Attempt]]:
    """Run a `pairs_select` query, optionally for one instance, ordered and limited."""
    if instance_id is not None:
        stmt = stmt.where(E.c.instance_id == instance_id)
    stmt = stmt.order_by(*order_by)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [pair_from(r) for r in conn.execute(stmt).mappings()]


# --------------------------------------------------------------------------------- reads on a connection


def get_view(conn: Connection, execution_id: int) -> ExecutionView:
    """The execution with its current attempt, on the caller's connection (inside its transaction)."""
    row = conn.execute(views_select().where(E.c.id == execution_id)).mappings().first()
    if row is None:
        raise ExecutionNotFound(f"execution {execution_id}")
    return view_from(row)


def get_attempt(conn: Connection, attempt_id: int) -> Attempt:
    """One attempt, on the caller's connection (inside its transaction)."""
    row = conn.execute(select(A).where(A.c.id == attempt_id)).mappings().first()
    if row is None:
        raise ExecutionNotFound(f"attempt {attempt_id}")
    return Attempt.from_mapping(row)


def live_row(conn: Connection, workflow: str, partition_key: str) -> Mapping[str, Any] | None:
    """The live (execution, current attempt) row for (workflow, partition_key), as a `views_select` row."""
    stmt = views_select().where(E.c.workflow == workflow, E.c.partition_key == partition_key, E.c.live)
    return conn.execute(stmt).mappings().first()
