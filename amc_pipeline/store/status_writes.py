"""The one code path that changes an attempt's status: a compare-and-set checked against `ALLOWED`.

Why one function for every status write (`transition()`, the cancel of a superseded attempt inside
`enqueue`, anything added later): the lifecycle rules live here once. A move `ALLOWED` refuses writes
nothing; an accepted move is one `UPDATE ... WHERE id = ? AND status = ?` (plus any extra condition the
caller adds), so a late or duplicated observation never moves an attempt backwards; and the time
columns (status_changed_at, completed_at, started_at, submitted_at) are set the same way whoever moves it.

It runs on the caller's connection so a status write can be part of a larger transaction (enqueue
supersedes, cancels and inserts atomically); the caller owns begin/commit.
"""

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, update
from sqlalchemy.sql.elements import ColumnElement

from amc_pipeline.store.rows import A, encode_fields, ts, utc
from amc_pipeline.store.states import ACTIVE, ALLOWED, QUEUED, RUNNING, TERMINAL, can_transition

logger = logging.getLogger(__name__)


def move_allowed(attempt_id: int, from_status: str, to_status: str) -> bool:
    """True when `from_status -> to_status` is in `ALLOWED`; otherwise log the refusal (with both states)."""
    if can_transition(from_status, to_status):
        return True
    logger.warning(
        "refused transition of attempt %s: %s -> %s is not allowed (allowed from %s: %s)",
        attempt_id,
        from_status,
        to_status,
        from_status,
        sorted(ALLOWED.get(from_status, ())),
    )
    return False


def set_status(
    conn: Connection,
    attempt_id: int,
    from_status: str,
    to_status: str,
    *,
    now: datetime | None = None,
    where: Sequence[ColumnElement[bool]] = (),
    **fields: Any,
) -> bool:
    """Compare-and-set the attempt's status `from_status -> to_status` on `conn` (one UPDATE).

    `fields` are other attempt columns written with the move (status_changed_at and completed_at default
    to `now`; started_at and submitted_at keep an earlier value). `where` adds conditions the row must
    also meet, e.g. `A.c.submit_started_at.is_(None)`. Returns False, changing nothing, when the move is
    not allowed (logged as a warning) or when the row no longer matches (someone else moved it first).
    """
    if not move_allowed(attempt_id, from_status, to_status):
        return False
    now = utc(now)
    values: dict[str, Any] = encode_fields(fields)
    values["status"] = to_status
    values.setdefault("status_changed_at", now)
    if to_status in TERMINAL:
        values.setdefault("completed_at", now)
    if to_status == RUNNING and "started_at" not in values:
        values["started_at"] = func.coalesce(A.c.started_at, ts(now))
    if from_status == QUEUED and to_status in ACTIVE and "submitted_at" not in values:
        values["submitted_at"] = func.coalesce(A.c.submitted_at, ts(now))
    stmt = update(A).where(A.c.id == attempt_id, A.c.status == from_status, *where).values(**values)
    changed = conn.execute(stmt).rowcount == 1
    if changed:
        logger.info("attempt %s: %s -> %s", attempt_id, from_status, to_status)
    else:
        logger.info(
            "attempt %s: %s -> %s not applied (%s)",
            attempt_id,
            from_status,
            to_status,
            "status or condition changed meanwhile" if where else "status changed meanwhile",
        )
    return changed
