"""Packs in the store: several windows riding on one AMC execution (docs/packing.md).

The data model: every window keeps its own execution row and attempt (its own status, landing and
partition). The attempt that AMC knows, the *leader*, has `pack_leader_id` = its own id; each other
window of the pack (a *member*) has `pack_leader_id` = the leader's id, no AMC id, no submit time and
no next check: the monitor never submits or polls a member. A leader's status moves are mirrored onto
its members in the same transaction, through the same compare-and-set (`status_writes.set_status`),
so the windows of a pack cannot disagree, and a member that was cancelled or superseded on its own
(not in the leader's status any more) is left alone.

Why no table of packs: "the windows a pack covers" is exactly `WHERE pack_leader_id = L`, and a retry
is a new attempt per window, so the old pack stays recorded as it was.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from amc_pipeline.store.engine import StoreEngine
from amc_pipeline.store.records import Attempt, ExecutionView
from amc_pipeline.store.rows import A, E, pair_from, pairs_select, ts, utc
from amc_pipeline.store.states import QUEUED
from amc_pipeline.store.status_writes import set_status

#: Attempt columns of a leader's move that its members take too (never AMC ids, times or schedules).
MIRRORED_FIELDS: frozenset[str] = frozenset({"amc_status", "failure_reason", "error_type", "last_error"})


def not_member(table: Any = A) -> ColumnElement[bool]:
    """Attempts that stand for themselves at AMC: outside any pack, or leading one.

    The slot count, the poll and the submit claim use it: a pack holds one slot and one quota unit.
    """
    return or_(table.c.pack_leader_id.is_(None), table.c.pack_leader_id == table.c.id)


def mirror_to_members(
    conn: Connection, leader_id: int, from_status: str, to_status: str, now: datetime, fields: Mapping[str, Any]
) -> int:
    """Move the leader's members `from_status -> to_status` with it, on the leader's transaction.

    Returns how many moved. `submitted_at` and `next_check_at` stay NULL on members, so neither the
    daily quota nor the poll ever counts them.
    """
    member_ids = conn.execute(
        select(A.c.id).where(A.c.pack_leader_id == leader_id, A.c.id != leader_id, A.c.status == from_status)
    ).scalars().all()
    values = {k: v for k, v in fields.items() if k in MIRRORED_FIELDS}
    moved = 0
    for member_id in member_ids:
        if set_status(conn, member_id, from_status, to_status, now=now, where=(A.c.pack_leader_id == leader_id,),
                      submitted_at=None, next_check_at=None, **values):
            moved += 1
    return moved


def release_members(conn: Connection, leader_id: int, now: datetime) -> None:
    """Free the QUEUED members of a leader cancelled before its create was sent: due again, unpacked."""
    conn.execute(
        update(A)
        .where(A.c.pack_leader_id == leader_id, A.c.id != leader_id, A.c.status == QUEUED)
        .values(pack_leader_id=None, next_check_at=now)
    )


class _LostClaim(Exception):
    """A window of the planned pack changed meanwhile (another monitor run, a forced re-run)."""


class Packs(StoreEngine):
    """Claiming windows into a pack, and reading which windows a pack covers."""

    def pack_candidates(
        self, workflow: str, instance_id: str, leader_attempt_id: int, lo: datetime, hi: datetime
    ) -> list[tuple[ExecutionView, Attempt]]:
        """Live windows of (workflow, instance) that may join the leader's pack, by window start.

        A candidate's current attempt is QUEUED, its create never started, and it is either free or
        already a member of this leader (a lost create being sent again must cover the same windows).
        Free windows join whether due or not: a window waiting for a slot, for tomorrow's quota or for
        its block to settle costs nothing more inside a pack that is being sent now. Windows starting
        in [lo, hi) only.
        """
        stmt = (
            pairs_select()
            .where(
                E.c.workflow == workflow,
                E.c.instance_id == instance_id,
                E.c.live,
                E.c.current_attempt_id == A.c.id,
                A.c.status == QUEUED,
                A.c.submit_started_at.is_(None),
                A.c.id != leader_attempt_id,
                E.c.window_start >= ts(utc(lo)),
                E.c.window_start < ts(utc(hi)),
                or_(A.c.pack_leader_id.is_(None), A.c.pack_leader_id == leader_attempt_id),
            )
            .order_by(E.c.window_start, E.c.id)
        )
        with self._read() as conn:
            return [pair_from(r) for r in conn.execute(stmt).mappings()]

    def claim_pack(self, leader_attempt_id: int, member_attempt_ids: Sequence[int], now: datetime) -> bool:
        """Claim the leader for its create call and the members for its pack, all or nothing.

        The leader: CAS QUEUED, submit never started, not another pack's member -> submit_started_at =
        now (from here on it is an ambiguous create until AMC's answer is recorded, as with
        `begin_submit`). Each member: CAS QUEUED, create never started, free or already this leader's,
        still the current attempt of a live execution -> pack_leader_id = leader, next_check_at NULL.
        Former members of this leader not in `member_attempt_ids` are released (due again now). Any
        lost CAS rolls the whole claim back (False): the next pass plans again.
        """
        now = utc(now)
        members = sorted(set(member_attempt_ids) - {leader_attempt_id})
        try:
            with self.engine.begin() as conn:
                led = conn.execute(
                    update(A)
                    .where(A.c.id == leader_attempt_id, A.c.status == QUEUED, A.c.submit_started_at.is_(None),
                           or_(A.c.pack_leader_id.is_(None), A.c.pack_leader_id == leader_attempt_id))
                    .values(submit_started_at=now, pack_leader_id=leader_attempt_id if members else None)
                ).rowcount
                if led != 1:
                    raise _LostClaim
                conn.execute(
                    update(A)
                    .where(A.c.pack_leader_id == leader_attempt_id, A.c.id != leader_attempt_id,
                           A.c.status == QUEUED, A.c.id.not_in(members or [-1]))
                    .values(pack_leader_id=None, next_check_at=now)
                )
                live_current = select(E.c.current_attempt_id).where(E.c.live, E.c.current_attempt_id.is_not(None))
                for member_id in members:
                    claimed = conn.execute(
                        update(A)
                        .where(A.c.id == member_id, A.c.status == QUEUED, A.c.submit_started_at.is_(None),
                               or_(A.c.pack_leader_id.is_(None), A.c.pack_leader_id == leader_attempt_id),
                               A.c.id.in_(live_current))
                        .values(pack_leader_id=leader_attempt_id, next_check_at=None)
                    ).rowcount
                    if claimed != 1:
                        raise _LostClaim
        except _LostClaim:
            return False
        return True

    def pack_members(self, leader_attempt_id: int) -> list[tuple[ExecutionView, Attempt]]:
        """(execution, member attempt) of every other window of the leader's pack, by window start."""
        stmt = pairs_select().where(A.c.pack_leader_id == leader_attempt_id, A.c.id != leader_attempt_id)
        with self._read() as conn:
            rows = conn.execute(stmt.order_by(E.c.window_start, E.c.id)).mappings()
            return [pair_from(r) for r in rows]

    def pack_of(self, attempt: Attempt) -> tuple[ExecutionView, Attempt] | None:
        """The leading (execution, attempt) of the pack `attempt` belongs to; None outside packs."""
        if attempt.pack_leader_id is None:
            return None
        with self._read() as conn:
            row = conn.execute(pairs_select().where(A.c.id == attempt.pack_leader_id)).mappings().first()
        return pair_from(row) if row is not None else None
