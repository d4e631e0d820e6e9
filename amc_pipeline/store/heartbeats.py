"""Monitor heartbeats: when each monitor last ran and last reached AMC, for the health check and `doctor`.

Why in the store: the monitor may run in any process on any host; the database is the one place
every health check can read from.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from amc_pipeline.store.engine import StoreEngine
from amc_pipeline.store.rows import utc
from amc_pipeline.store.tables import amc_monitor_heartbeats as H

#: Longest detail text kept per heartbeat (an error message, not a log).
_DETAIL_CHARS = 2000


class Heartbeats(StoreEngine):
    """One row per monitor name: last pass, last pass that reached AMC, and its detail."""

    def record_heartbeat(self, name: str, *, ok: bool, detail: str | None = None, now: datetime | None = None) -> None:
        """Record one monitor pass: `ok` when AMC answered. Upsert by name, race-safe across processes."""
        now = utc(now)
        values: dict[str, Any] = {"last_attempt_at": now, "ok": ok, "detail": (detail or "")[:_DETAIL_CHARS]}
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
        """The heartbeat row of monitor `name` as a dict, or None before its first pass."""
        with self._read() as conn:
            row = conn.execute(select(H).where(H.c.name == name)).mappings().first()
        return dict(row) if row else None
