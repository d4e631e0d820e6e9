"""Landing results: which executions are ready to land, the landing lease, and its outcome.

Why landing state lives on the execution (not the attempt): a partition lands once per current
attempt; `landed_attempt_id` says which attempt's result is on disk, so a retry (a new current attempt)
makes the execution landable again without touching the old attempt's record.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update

from amc_pipeline.store.engine import StoreEngine
from amc_pipeline.store.records import ExecutionView
from amc_pipeline.store.rows import CUR, E, ExecutionNotFound, ts, utc, view_from, views_select
from amc_pipeline.store.states import SUCCESS


class Landing(StoreEngine):
    """Landable executions, the landing lease (`begin_landing`) and what the landing recorded."""

    def landable(
        self, now: datetime | None = None, limit: int = 100, *, max_land_attempts: int | None = None
    ) -> list[ExecutionView]:
        """Live executions whose current attempt SUCCEEDED and has not landed, not backing off; oldest first.

        (live, current attempt SUCCESS, landed_attempt_id != current attempt, next_land_at null or <= now;
        with `max_land_attempts`, only those that have not used them up, so given-up landings do not
        crowd out the rest.)
        """
        now = utc(now)
        stmt = (
            views_select()
            .where(
                E.c.live,
                CUR.c.status == SUCCESS,
                or_(E.c.landed_attempt_id.is_(None), E.c.landed_attempt_id != E.c.current_attempt_id),
                or_(E.c.next_land_at.is_(None), E.c.next_land_at <= ts(now)),
            )
            .order_by(E.c.requested_at, E.c.id)
            .limit(limit)
        )
        if max_land_attempts is not None:
            stmt = stmt.where(E.c.land_attempts < max_land_attempts)
        with self._read() as conn:
            return [view_from(r) for r in conn.execute(stmt).mappings()]

    def begin_landing(self, execution_id: int, *, lease_until: datetime | None = None) -> int:
        """Count a landing attempt (atomic increment) and return its number, for unique run keys.

        `lease_until` hides the execution from `landable` while this landing runs; if the landing's
        process dies without recording anything, the lease expires and the landing sensor tries again.
        """
        values: dict[str, Any] = {"land_attempts": E.c.land_attempts + 1}
        if lease_until is not None:
            values["next_land_at"] = utc(lease_until)
        return self._update_landing(execution_id, values)

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
        now = utc(now)
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
        utc(now)
        return self._update_landing(execution_id, {"land_error": error, "next_land_at": next_land_at})

    def _update_landing(self, execution_id: int, values: dict[str, Any]) -> int:
        """Write landing fields of one execution and return its land_attempts, in one transaction."""
        with self.engine.begin() as conn:
            result = conn.execute(update(E).where(E.c.id == execution_id).values(**values))
            if result.rowcount != 1:
                raise ExecutionNotFound(f"execution {execution_id}")
            return int(conn.execute(select(E.c.land_attempts).where(E.c.id == execution_id)).scalar_one())
