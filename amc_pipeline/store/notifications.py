"""Notifications: one row per (target, event), what was sent, and what is still to be sent.

Why in the store (docs/architecture.md, "Notifications"): exactly one message per event per target must
survive sensor ticks, delivery retries, daemon restarts and two evaluations at once. The unique
(target, event_key) index refuses a second record of one event; a sender first *claims* a row with a
compare-and-set on its `attempts` (and a short lease in `next_try_at`), so two evaluations never both
send it; only then does it POST, and it records the outcome. No URL is ever written here: a target
names an environment variable that is read at send time, and error texts are scrubbed before they
reach `record_notification_failure`.
"""

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from amc_pipeline.store.engine import StoreEngine
from amc_pipeline.store.rows import ts, utc
from amc_pipeline.store.tables import amc_notifications as N

#: Longest error text kept per row (a reason, not a log).
_ERROR_CHARS = 1000


@dataclass(frozen=True)
class NewNotification:
    """An event a target should hear about, before it is recorded."""

    event_key: str
    kind: str
    workflow: str | None
    partition_key: str | None
    #: The event's facts as JSON text (workflow, window, status, reason, ...): what the message says.
    payload: str


@dataclass(frozen=True)
class Notification:
    """One recorded (target, event) and its delivery state."""

    id: int
    target: str
    event_key: str
    kind: str
    workflow: str | None
    partition_key: str | None
    payload: str
    first_seen_at: datetime
    sent_at: datetime | None
    attempts: int
    last_error: str | None
    last_try_at: datetime | None
    next_try_at: datetime | None
    resolved_at: datetime | None

    def data(self) -> dict[str, Any]:
        value = json.loads(self.payload)
        return value if isinstance(value, dict) else {}


def _row(mapping: Any) -> Notification:
    return Notification(**{c.name: mapping[c.name] for c in N.c})


class Notifications(StoreEngine):
    """Record events per target (deduplicated), claim and settle deliveries, resolve what recovered."""

    def add_notifications(self, target: str, items: Sequence[NewNotification], *, now: datetime | None = None
                          ) -> list[str]:
        """Record the events `target` has not recorded yet, due now; returns the keys newly recorded.

        Race-safe: an event another evaluation recorded meanwhile is skipped by the unique index.
        """
        now = utc(now)
        wanted = {item.event_key: item for item in items}
        if not wanted:
            return []
        with self._read() as conn:
            known = set(conn.execute(select(N.c.event_key).where(
                N.c.target == target, N.c.event_key.in_(list(wanted)))).scalars())
        added = []
        with self.engine.begin() as conn:
            for key, item in wanted.items():
                if key in known:
                    continue
                try:
                    with conn.begin_nested():
                        conn.execute(insert(N).values(
                            target=target, event_key=key, kind=item.kind, workflow=item.workflow,
                            partition_key=item.partition_key, payload=item.payload, first_seen_at=now,
                            attempts=0, next_try_at=now))
                    added.append(key)
                except IntegrityError:
                    continue
        return added

    def open_notifications(self, target: str, kinds: Iterable[str]) -> list[Notification]:
        """`target`'s rows of these kinds not yet resolved (a problem the target may hear recovered), oldest first."""
        stmt = (select(N).where(N.c.target == target, N.c.kind.in_(list(kinds)), N.c.resolved_at.is_(None))
                .order_by(N.c.id))
        with self._read() as conn:
            return [_row(m) for m in conn.execute(stmt).mappings()]

    def notification_keys(self, target: str, prefix: str) -> set[str]:
        """Every event key of `target` starting with `prefix` (to number a new episode of a problem)."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = select(N.c.event_key).where(N.c.target == target, N.c.event_key.like(escaped + "%", escape="\\"))
        with self._read() as conn:
            return set(conn.execute(stmt).scalars())

    def resolve_notifications(self, target: str, ids: Sequence[int], *, recovered: NewNotification | None = None,
                              now: datetime | None = None) -> bool:
        """Mark rows `ids` of `target` resolved and record the `recovered` event, in one transaction.

        CAS: only if none of them was resolved meanwhile (else nothing is written and False returned),
        so two evaluations of one recovery record it once.
        """
        now = utc(now)
        if not ids:
            return False
        try:
            with self.engine.begin() as conn:
                done = conn.execute(update(N).where(N.c.target == target, N.c.id.in_(list(ids)),
                                                    N.c.resolved_at.is_(None)).values(resolved_at=now)).rowcount
                if done != len(set(ids)):
                    raise _Lost
                if recovered is not None:
                    conn.execute(insert(N).values(
                        target=target, event_key=recovered.event_key, kind=recovered.kind,
                        workflow=recovered.workflow, partition_key=recovered.partition_key,
                        payload=recovered.payload, first_seen_at=now, attempts=0, next_try_at=now))
        except (_Lost, IntegrityError):
            return False
        return True

    def pending_notifications(self, target: str, *, now: datetime | None = None, limit: int = 100
                              ) -> list[Notification]:
        """`target`'s unsent rows that are due (not leased, backoff passed), oldest first."""
        now = utc(now)
        stmt = (select(N).where(N.c.target == target, N.c.sent_at.is_(None),
                                or_(N.c.next_try_at.is_(None), N.c.next_try_at <= ts(now)))
                .order_by(N.c.id).limit(limit))
        with self._read() as conn:
            return [_row(m) for m in conn.execute(stmt).mappings()]

    def claim_notification(self, notification_id: int, *, attempts: int, lease_until: datetime,
                           now: datetime | None = None) -> bool:
        """Take row `notification_id` for one delivery try. CAS on `attempts` (as the caller read it):
        of two evaluations that read the same row only one wins; the row is then leased (not due)
        until `lease_until`, so a sender that died mid-try is retried after it."""
        now = utc(now)
        with self.engine.begin() as conn:
            result = conn.execute(
                update(N)
                .where(N.c.id == notification_id, N.c.sent_at.is_(None), N.c.attempts == attempts,
                       or_(N.c.next_try_at.is_(None), N.c.next_try_at <= ts(now)))
                .values(attempts=N.c.attempts + 1, last_try_at=now, next_try_at=utc(lease_until)))
            return result.rowcount == 1

    def record_notification_sent(self, notification_id: int, *, now: datetime | None = None) -> bool:
        """The target accepted the message: the row is done for good."""
        now = utc(now)
        with self.engine.begin() as conn:
            return conn.execute(update(N).where(N.c.id == notification_id, N.c.sent_at.is_(None))
                                .values(sent_at=now, next_try_at=None, last_error=None)).rowcount == 1

    def record_notification_failure(self, notification_id: int, *, error: str, next_try_at: datetime,
                                    now: datetime | None = None) -> bool:
        """A try failed: keep the (already scrubbed) error and when to try again."""
        utc(now)
        with self.engine.begin() as conn:
            return conn.execute(update(N).where(N.c.id == notification_id, N.c.sent_at.is_(None))
                                .values(last_error=error[:_ERROR_CHARS], next_try_at=utc(next_try_at))).rowcount == 1

    def failing_notification_targets(self, targets: Iterable[str]) -> dict[str, str]:
        """Targets whose latest delivery try failed (after their latest success), with that error."""
        names = list(targets)
        if not names:
            return {}
        with self._read() as conn:
            last_ok = dict(conn.execute(select(N.c.target, func.max(N.c.sent_at))
                                        .where(N.c.target.in_(names)).group_by(N.c.target)).all())
            failures = conn.execute(
                select(N.c.target, N.c.last_error, N.c.last_try_at)
                .where(N.c.target.in_(names), N.c.sent_at.is_(None), N.c.last_error.is_not(None))
                .order_by(N.c.last_try_at.desc(), N.c.id.desc())).all()
        failing: dict[str, str] = {}
        for target, error, tried in failures:
            if target in failing:
                continue
            ok = last_ok.get(target)
            if ok is None or (tried is not None and utc(tried) > utc(ok)):
                failing[target] = error
        return failing

    def list_notifications(self, *, target: str | None = None) -> list[Notification]:
        """Every recorded notification (of one target), oldest first: for tests and people."""
        stmt = select(N).order_by(N.c.id)
        if target is not None:
            stmt = stmt.where(N.c.target == target)
        with self._read() as conn:
            return [_row(m) for m in conn.execute(stmt).mappings()]


class _Lost(Exception):
    """Another evaluation resolved one of the rows first: roll the whole resolution back."""
