"""Listings for people and metrics: executions by filter, known AMC ids, attempts over a period.

Why apart from the monitor's queries (`due.py`): these are read rarely and broadly (UI, health,
adoption checks, metrics), not on the monitor's hot path, and are free to change shape with the reports.
"""

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select

from amc_pipeline.store.engine import StoreEngine
from amc_pipeline.store.records import Attempt, ExecutionView
from amc_pipeline.store.rows import CUR, A, E, pair_from, pairs_select, ts, utc, view_from, views_select


class Reports(StoreEngine):
    """Broad reads: executions listed by filter, every AMC id on an instance, attempts since a time."""

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
        stmt = views_select()
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
            return [view_from(r) for r in conn.execute(stmt).mappings()]

    def amc_ids_for(self, instance_id: str) -> set[str]:
        """Every AMC execution id we know on this instance (any attempt, live or not): adoption checks."""
        stmt = (
            select(A.c.amc_execution_id)
            .select_from(A.join(E, E.c.id == A.c.execution_id))
            .where(E.c.instance_id == instance_id, A.c.amc_execution_id.is_not(None))
        )
        with self._read() as conn:
            return {r[0] for r in conn.execute(stmt)}

    def attempts_since(self, since: datetime, *, workflow: str | None = None) -> list[tuple[ExecutionView, Attempt]]:
        """Every attempt created since `since` with its execution (for metrics), oldest first."""
        stmt = pairs_select().where(A.c.created_at >= ts(utc(since)))
        if workflow is not None:
            stmt = stmt.where(E.c.workflow == workflow)
        stmt = stmt.order_by(A.c.created_at, A.c.id)
        with self._read() as conn:
            return [pair_from(r) for r in conn.execute(stmt).mappings()]
