"""ExecutionStore behaviour on SQLite and PostgreSQL: writes (CAS), enqueue, and every query."""

import itertools
import logging
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from amc_pipeline.store import STATUSES, Enqueued, ExecutionNotFound, ExecutionStore, can_transition, status_writes
from amc_pipeline.store.records import DueSummary
from amc_pipeline_tests.store.helpers import T0, at, enq, force_status, submit

PAIRS = list(itertools.product(STATUSES, STATUSES))


# --------------------------------------------------------------------------------------- transitions


def test_every_transition_pair_against_the_database(store: ExecutionStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="amc_pipeline.store.status_writes")
    for i, (a, b) in enumerate(PAIRS):
        view = enq(store, f"pair-{i}")
        attempt_id = view.attempt.id
        force_status(store, attempt_id, a)
        caplog.clear()
        applied = store.transition(attempt_id, a, b, now=at(60), amc_status="X")
        assert applied is can_transition(a, b), (a, b)
        after = store.get_attempt(attempt_id)
        if applied:
            assert after.status == b
            assert after.status_changed_at == at(60)
            assert after.amc_status == "X"
        else:
            assert after.status == a, (a, b)
            assert after.amc_status is None  # a refused move writes nothing at all
            messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert any(f"{a} -> {b}" in m and "not allowed" in m for m in messages), (a, b, messages)


def test_transition_timestamps(store: ExecutionStore) -> None:
    view = enq(store, "2024-09-01")
    aid = view.attempt.id
    assert store.transition(aid, "QUEUED", "PENDING", now=at(10), amc_execution_id="amc-1")
    a = store.get_attempt(aid)
    assert (a.submitted_at, a.started_at, a.completed_at) == (at(10), None, None)
    assert store.transition(aid, "PENDING", "RUNNING", now=at(20))
    assert store.get_attempt(aid).started_at == at(20)
    cols = [{"name": "impressions", "data_type": "LONG"}]
    assert store.transition(
        aid, "RUNNING", "SUCCESS", now=at(30), execution_time_seconds=9.5, amc_status="SUCCEEDED", output_columns=cols
    )
    a = store.get_attempt(aid)
    assert (a.started_at, a.completed_at, a.status_changed_at) == (at(20), at(30), at(30))
    assert a.execution_time_seconds == 9.5 and a.columns() == cols and a.is_terminal
    # PENDING straight to SUCCESS (a skipped observation) is normal: no started_at invented.
    other = enq(store, "2024-09-02")
    submit(store, other, "amc-2", now=at(5))
    assert store.transition(other.attempt.id, "PENDING", "SUCCESS", now=at(40))
    b = store.get_attempt(other.attempt.id)
    assert b.started_at is None and b.completed_at == at(40) and b.submitted_at == at(5)


def test_transition_cas_and_validation(store: ExecutionStore) -> None:
    aid = enq(store, "2024-09-01").attempt.id
    assert store.transition(aid, "QUEUED", "PENDING", now=at(1))
    # Stale from_status: matches no row, changes nothing (not even the extra fields).
    assert not store.transition(aid, "QUEUED", "CANCELLED", now=at(2), last_error="late")
    a = store.get_attempt(aid)
    assert a.status == "PENDING" and a.last_error is None
    with pytest.raises(ValueError, match="not writable"):
        store.transition(aid, "PENDING", "RUNNING", bogus=1)
    with pytest.raises(ValueError, match="not writable"):
        store.transition(aid, "PENDING", "RUNNING", execution_id=99)
    assert store.get_attempt(aid).status == "PENDING"
    assert not store.transition(10_000, "PENDING", "RUNNING")


def test_update_attempt(store: ExecutionStore) -> None:
    aid = enq(store, "2024-09-01").attempt.id
    assert store.update_attempt(aid, amc_request_id="req-1")
    assert not store.update_attempt(aid, expect_status="PENDING", amc_request_id="req-2")
    assert store.update_attempt(aid, expect_status="QUEUED", amc_status="PENDING", failure_reason="none")
    a = store.get_attempt(aid)
    assert (a.amc_request_id, a.amc_status, a.status) == ("req-1", "PENDING", "QUEUED")
    with pytest.raises(ValueError, match="transition"):
        store.update_attempt(aid, status="RUNNING")
    with pytest.raises(ValueError):
        store.update_attempt(aid)


def test_begin_submit_and_ambiguous(store: ExecutionStore) -> None:
    view = enq(store, "2024-09-01")
    aid = view.attempt.id
    assert store.begin_submit(aid, at(1), next_check_at=at(61))
    assert not store.begin_submit(aid, at(2))  # claimed once only
    a = store.get_attempt(aid)
    assert a.submit_started_at == at(1) and a.next_check_at == at(61) and a.is_ambiguous
    assert store.due_summary(at(30)).ambiguous == 0
    assert store.due_summary(at(61)).ambiguous == 1
    assert [x.id for _, x in store.ambiguous_attempts("inst")] == [aid]
    assert store.ambiguous_attempts("inst", now=at(30)) == []
    assert store.ambiguous_attempts("other") == []
    # resolved by listing: AMC had it
    assert store.transition(aid, "QUEUED", "PENDING", now=at(70), amc_execution_id="amc-1")
    assert store.ambiguous_attempts() == []
    assert not store.begin_submit(aid, at(80))


# ------------------------------------------------------------------------------------------- enqueue


def test_enqueue_never_duplicates(store: ExecutionStore) -> None:
    v1, created1 = store.enqueue(
        workflow="wf", instance_id="inst", partition_key="2024-09-01", window_start=T0, window_end=at(86400), now=T0
    )
    v2, created2 = store.enqueue(
        workflow="wf", instance_id="inst", partition_key="2024-09-01", window_start=T0, window_end=at(86400), now=at(5)
    )
    assert created1 and not created2
    assert v1 == v2
    a = v1.attempt
    assert v1.status == "QUEUED" and v1.live and v1.current_attempt_id == a.id
    assert (a.attempt, a.retry_count, a.error_count, a.next_check_at, a.created_at) == (1, 0, 0, T0, T0)
    assert re.fullmatch(r"[0-9a-f]{12}", a.client_token)
    assert v1.requested_at == T0 and v1.land_attempts == 0 and not v1.landed
    assert enq(store, "2024-09-02").id != v1.id
    assert enq(store, "2024-09-01", workflow="other").id != v1.id
    assert store.get_live("wf", "2024-09-01") == v1
    assert store.get_live("wf", "2031-01-01") is None
    assert store.get(v1.id) == v1
    assert len(store.list_executions(live_only=False)) == 3
    with pytest.raises(ExecutionNotFound):
        store.get(999_999)
    with pytest.raises(ExecutionNotFound):
        store.get_attempt(999_999)


def test_force_new_supersedes(store: ExecutionStore) -> None:
    old = enq(store, "2024-09-01")
    new, created = store.enqueue(
        workflow="wf",
        instance_id="inst",
        partition_key="2024-09-01",
        window_start=T0,
        window_end=at(86400),
        force_new=True,
        now=at(10),
    )
    assert created and new.id != old.id and new.live and new.status == "QUEUED"
    old_now = store.get(old.id)
    assert not old_now.live
    # never submitted: cancelled in the same transaction (nothing exists at AMC)
    assert old_now.status == "CANCELLED" and old_now.attempt.completed_at == at(10)
    assert store.get_live("wf", "2024-09-01") == new
    # a submitted (active) old attempt is left for the caller to cancel at AMC, and still polled
    submit(store, new, "amc-new", now=at(20))
    newer = enq(store, "2024-09-01", force_new=True, now=at(30))
    assert store.get(new.id).status == "PENDING" and not store.get(new.id).live
    assert [a.id for _, a in store.due_for_poll(at(30))] == [new.attempt.id]
    assert store.get_live("wf", "2024-09-01").id == newer.id
    assert [v.id for v in store.list_executions(live_only=False)] == [newer.id, new.id, old.id]
    assert [v.id for v in store.list_executions()] == [newer.id]
    # force_new with nothing live just creates
    _, created = store.enqueue(
        workflow="wf", instance_id="inst", partition_key="2024-09-09", window_start=T0, window_end=T0, force_new=True
    )
    assert created


def _forced(store: ExecutionStore, key: str, now: datetime) -> Enqueued:
    return store.enqueue_forced(
        workflow="wf", instance_id="inst", partition_key=key, window_start=T0, window_end=at(86400), now=now
    )


def test_enqueue_forced_reports_what_it_superseded(store: ExecutionStore) -> None:
    # nothing live: creates, supersedes nothing
    first = _forced(store, "2024-09-01", at(0))
    assert first.created and first.superseded is None and first.execution.status == "QUEUED"
    # never submitted: the store cancels it, through the same CAS as transition()
    second = _forced(store, "2024-09-01", at(10))
    old_view, old_attempt, cancelled = second.superseded
    assert cancelled and second.created and second.execution.live
    assert old_view.id == first.execution.id and not old_view.live
    assert old_attempt == store.get_attempt(first.execution.attempt.id) == old_view.attempt
    assert old_attempt.status == "CANCELLED"
    assert (old_attempt.status_changed_at, old_attempt.completed_at) == (at(10), at(10))
    assert old_attempt.last_error == "superseded by a forced re-run before submit"
    assert old_attempt.submitted_at is None and old_attempt.started_at is None
    # submit started (ambiguous create): left QUEUED for the caller, not cancelled
    assert store.begin_submit(second.execution.attempt.id, at(15))
    third = _forced(store, "2024-09-01", at(20))
    assert third.superseded.cancelled is False
    assert third.superseded.attempt.status == "QUEUED" and third.superseded.attempt.completed_at is None
    assert not third.superseded.execution.live
    # active at AMC: left PENDING for the caller to cancel there
    submit(store, third.execution, "amc-3", now=at(30))
    fourth = _forced(store, "2024-09-01", at(40))
    assert fourth.superseded == (store.get(third.execution.id), store.get_attempt(third.execution.attempt.id), False)
    assert fourth.superseded.attempt.status == "PENDING"
    # enqueue() keeps its (execution, created) return value
    view, created = store.enqueue(
        workflow="wf", instance_id="inst", partition_key="2024-09-01", window_start=T0, window_end=at(86400)
    )
    assert (view, created) == (fourth.execution, False)


def test_supersede_cancel_obeys_the_lifecycle_table(
    store: ExecutionStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The cancel is the status CAS, not a raw UPDATE: a move the table refuses is not written."""
    old = enq(store, "2024-09-01")
    monkeypatch.setattr(status_writes, "can_transition", lambda a, b: not (a == "QUEUED" and b == "CANCELLED"))
    caplog.set_level(logging.WARNING, logger="amc_pipeline.store.status_writes")
    result = _forced(store, "2024-09-01", at(10))
    assert result.created and result.superseded.cancelled is False
    assert store.get_attempt(old.attempt.id).status == "QUEUED" and not store.get(old.id).live
    assert any("QUEUED -> CANCELLED is not allowed" in r.getMessage() for r in caplog.records)


# -------------------------------------------------------------------------------------------- queries


def test_due_summary(store: ExecutionStore) -> None:
    assert store.due_summary(T0) == DueSummary(0, 0, 0, None, ())
    q_due = enq(store, "2024-09-01", now=at(0))  # next_check_at = at(0)
    enq(store, "2024-09-02", now=at(3600))  # queued, not due until at(3600)
    amb = enq(store, "2024-09-03", now=at(-50))
    assert store.begin_submit(amb.attempt.id, at(1))
    pend = enq(store, "2024-09-04", now=at(-100))
    submit(store, pend, "amc-p", now=at(-100), next_check=90)  # due at(-10)
    run = enq(store, "2024-09-05", now=at(-100))
    submit(store, run, "amc-r", now=at(-100), next_check=0)
    assert store.transition(run.attempt.id, "PENDING", "RUNNING", now=at(0), next_check_at=at(600))
    done = enq(store, "2024-09-06", now=at(-500))
    submit(store, done, "amc-d", now=at(-500))
    assert store.transition(done.attempt.id, "PENDING", "SUCCESS", now=at(-400))

    s = store.due_summary(at(5))
    assert (s.submit_due, s.poll_due, s.ambiguous) == (1, 1, 1)
    assert s.any_due
    assert s.next_due_at == at(-50)  # earliest next_check_at among QUEUED/PENDING/RUNNING
    assert s.oldest_due_ids == (amb.attempt.id, pend.attempt.id, q_due.attempt.id)
    later = store.due_summary(at(3600))
    assert (later.submit_due, later.poll_due, later.ambiguous) == (2, 2, 1)
    earlier = store.due_summary(at(-1000))
    assert not earlier.any_due and earlier.oldest_due_ids == () and earlier.next_due_at == at(-50)


def test_queued_for_submit_order_and_filters(store: ExecutionStore) -> None:
    # requested out of key order: the oldest request goes first
    c = enq(store, "2024-09-03", now=at(30))
    a = enq(store, "2024-09-01", now=at(10))
    b = enq(store, "2024-09-02", now=at(20))
    enq(store, "2024-09-04", instance="other", now=at(0))
    started = enq(store, "2024-09-05", now=at(0))
    assert store.begin_submit(started.attempt.id, at(1))
    enq(store, "2024-09-06", now=at(500))  # not due yet
    superseded = enq(store, "2024-09-07", now=at(1))
    store.update_attempt(superseded.attempt.id, next_check_at=at(2))
    enq(store, "2024-09-07", now=at(600), force_new=True)  # old one cancelled, new one not due

    got = store.queued_for_submit("inst", at(100), 10)
    assert [v.id for v, _ in got] == [a.id, b.id, c.id]
    assert all(x.status == "QUEUED" and v.current_attempt_id == x.id for v, x in got)
    assert [v.id for v, _ in store.queued_for_submit("inst", at(100), 2)] == [a.id, b.id]
    assert [v.partition_key for v, _ in store.queued_for_submit("other", at(100), 10)] == ["2024-09-04"]
    assert store.queued_for_submit("inst", at(5), 10) == []


def test_active_count_and_submitted_since(store: ExecutionStore) -> None:
    enq(store, "2024-09-01")  # QUEUED, not started: neither active nor counted
    started = enq(store, "2024-09-02")
    assert store.begin_submit(started.attempt.id, at(10))  # ambiguous: holds a slot and a quota unit
    pend = enq(store, "2024-09-03")
    submit(store, pend, "amc-1", now=at(-3600))
    run = enq(store, "2024-09-04")
    submit(store, run, "amc-2", now=at(20))
    assert store.transition(run.attempt.id, "PENDING", "RUNNING", now=at(30))
    done = enq(store, "2024-09-05")
    submit(store, done, "amc-3", now=at(40))
    assert store.transition(done.attempt.id, "PENDING", "FAILED", now=at(50))
    other = enq(store, "2024-09-06", instance="other")
    submit(store, other, "amc-4", now=at(60))
    # a superseded execution still running at AMC still holds its slot
    enq(store, "2024-09-03", force_new=True, now=at(70))

    assert store.active_count("inst") == 3  # started (ambiguous), PENDING, RUNNING
    assert store.active_count("other") == 1
    assert store.active_count("nobody") == 0
    assert store.submitted_since("inst", T0) == 3  # ambiguous at(10), run at(20), done at(40)
    assert store.submitted_since("inst", at(-7200)) == 4
    assert store.submitted_since("inst", at(15)) == 2
    assert store.submitted_since("other", T0) == 1


def test_due_for_poll(store: ExecutionStore) -> None:
    p1 = enq(store, "2024-09-01")
    submit(store, p1, "amc-1", now=T0, next_check=30)
    p2 = enq(store, "2024-09-02")
    submit(store, p2, "amc-2", now=T0, next_check=10)
    p3 = enq(store, "2024-09-03", instance="other")
    submit(store, p3, "amc-3", now=T0, next_check=20)
    future = enq(store, "2024-09-04")
    submit(store, future, "amc-4", now=T0, next_check=9999)
    done = enq(store, "2024-09-05")
    submit(store, done, "amc-5", now=T0, next_check=0)
    assert store.transition(done.attempt.id, "PENDING", "SUCCESS", now=T0)
    enq(store, "2024-09-06")  # QUEUED: not a poll

    got = store.due_for_poll(at(100))
    assert [a.amc_execution_id for _, a in got] == ["amc-2", "amc-3", "amc-1"]
    assert [a.amc_execution_id for _, a in store.due_for_poll(at(100), limit=1)] == ["amc-2"]
    assert [v.partition_key for v, _ in store.due_for_poll(at(100), instance_id="other")] == ["2024-09-03"]
    assert store.due_for_poll(at(5)) == []
    view, attempt = got[0]
    assert view.attempt == attempt and view.id == attempt.execution_id
    assert {a.amc_execution_id for _, a in store.active_attempts("inst")} == {"amc-1", "amc-2", "amc-4"}


def test_record_check_counts_errors(store: ExecutionStore) -> None:
    v = enq(store, "2024-09-01")
    aid = submit(store, v, "amc-1").id
    a = store.record_check(aid, now=at(1), next_check_at=at(61), error="503 from AMC", error_type="AMC_API")
    assert (a.error_count, a.last_error, a.error_type, a.last_checked_at, a.next_check_at) == (
        1,
        "503 from AMC",
        "AMC_API",
        at(1),
        at(61),
    )
    a = store.record_check(aid, now=at(61), next_check_at=at(181), error="timeout", error_type="NETWORK")
    assert (a.error_count, a.last_error, a.error_type) == (2, "timeout", "NETWORK")
    a = store.record_check(aid, now=at(181), next_check_at=at(300))
    assert a.error_count == 0 and a.last_checked_at == at(181) and a.next_check_at == at(300)
    assert a.status == "PENDING"
    with pytest.raises(ExecutionNotFound):
        store.record_check(999_999, now=T0, next_check_at=T0)


def test_new_attempt_cas(store: ExecutionStore) -> None:
    v = enq(store, "2024-09-01")
    first = submit(store, v, "amc-1")
    assert store.transition(first.id, "PENDING", "FAILED", now=at(10), error_type="RESOURCE")
    second = store.new_attempt(v.id, first.id, next_check_at=at(300), now=at(11))
    assert second is not None
    assert (second.attempt, second.retry_count, second.status, second.next_check_at) == (2, 1, "QUEUED", at(300))
    assert second.client_token != first.client_token and second.amc_execution_id is None
    assert store.get(v.id).current_attempt_id == second.id
    # the same retry decided twice (an overlapping run): refused, nothing inserted
    assert store.new_attempt(v.id, first.id, next_check_at=at(300), now=at(12)) is None
    assert [a.attempt for a in store.attempts_for(v.id)] == [1, 2]
    third = store.new_attempt(v.id, second.id, next_check_at=at(900), now=at(13))
    assert third is not None and (third.attempt, third.retry_count) == (3, 2)
    assert [a.id for a in store.attempts_for(v.id)] == [first.id, second.id, third.id]
    other = enq(store, "2024-09-02")
    with pytest.raises(ValueError):
        store.new_attempt(other.id, third.id, next_check_at=T0)


def test_landing(store: ExecutionStore) -> None:
    def succeed(key: str, now: datetime) -> int:
        v = enq(store, key, now=now)
        submit(store, v, f"amc-{key}", now=now)
        assert store.transition(v.attempt.id, "PENDING", "SUCCESS", now=now)
        return v.id

    second = succeed("2024-09-02", at(20))
    first = succeed("2024-09-01", at(10))
    pending = enq(store, "2024-09-03")
    submit(store, pending, "amc-p")
    assert [v.id for v in store.landable(at(100))] == [first, second]
    assert [v.id for v in store.landable(at(100), limit=1)] == [first]

    assert store.begin_landing(first) == 1
    assert store.record_land_failure(first, error="download expired", next_land_at=at(200), now=at(101)) == 1
    v = store.get(first)
    assert (v.land_error, v.next_land_at, v.land_attempts) == ("download expired", at(200), 1)
    assert [v.id for v in store.landable(at(150))] == [second]
    assert [v.id for v in store.landable(at(200))] == [first, second]
    assert store.begin_landing(first) == 2

    attempt_id = store.get(first).current_attempt_id
    assert store.record_landed(first, attempt_id, rows=10, bytes=2048, uri="file:///r/p.parquet", now=at(210))
    v = store.get(first)
    assert v.landed and v.landed_at == at(210) and (v.rows, v.bytes, v.uri) == (10, 2048, "file:///r/p.parquet")
    assert v.land_error is None and v.next_land_at is None and v.land_attempts == 2
    assert [v.id for v in store.landable(at(300))] == [second]
    # a stale landing (not the current attempt) is refused
    assert not store.record_landed(second, attempt_id, rows=1, bytes=1, uri="x", now=at(300))
    # superseded executions are not landed
    enq(store, "2024-09-02", force_new=True, now=at(400))
    assert store.landable(at(500)) == []
    with pytest.raises(ExecutionNotFound):
        store.begin_landing(999_999)


def test_list_executions_and_amc_ids(store: ExecutionStore) -> None:
    a = enq(store, "2024-09-01", now=at(1))
    b = enq(store, "2024-09-02", now=at(2), workflow="other_wf")
    c = enq(store, "2024-09-03", now=at(3), instance="inst2")
    submit(store, a, "amc-a")
    submit(store, c, "amc-c")
    assert [v.id for v in store.list_executions()] == [c.id, b.id, a.id]
    assert [v.id for v in store.list_executions(workflow="other_wf")] == [b.id]
    assert [v.id for v in store.list_executions(status="PENDING")] == [c.id, a.id]
    assert [v.id for v in store.list_executions(status=["QUEUED"], instance_id="inst")] == [b.id]
    assert [v.id for v in store.list_executions(limit=1)] == [c.id]
    assert store.amc_ids_for("inst") == {"amc-a"}
    assert store.amc_ids_for("inst2") == {"amc-c"}
    assert store.amc_ids_for("none") == set()
    view, attempt = store.get_by_amc_id("amc-c")
    assert view.id == c.id and attempt.amc_execution_id == "amc-c"
    assert store.get_by_amc_id("nope") is None


def test_times_are_aware_utc(store: ExecutionStore, backend: str) -> None:
    plus2 = timezone(timedelta(hours=2))
    start = datetime(2024, 9, 1, 2, 0, tzinfo=plus2)  # 2024-09-01T00:00Z
    view, _ = store.enqueue(
        workflow="wf",
        instance_id="inst",
        partition_key="2024-09-01",
        window_start=start,
        window_end=start + timedelta(days=1),
        now=datetime(2024, 9, 1, 14, 0, 0, 123456, tzinfo=plus2),
    )
    again = store.get(view.id)
    for value in (again.window_start, again.window_end, again.requested_at, again.attempt.created_at):
        assert value.tzinfo is not None and value.utcoffset() == timedelta(0)
    assert again.window_start == datetime(2024, 9, 1, tzinfo=UTC)
    assert again.requested_at == datetime(2024, 9, 1, 12, 0, 0, 123456, tzinfo=UTC)
    # queries compare correctly across offsets
    assert store.due_summary(datetime(2024, 9, 1, 14, 0, 0, 123456, tzinfo=plus2)).submit_due == 1
    assert store.due_summary(datetime(2024, 9, 1, 14, 0, 0, 123455, tzinfo=plus2)).submit_due == 0
    with pytest.raises(ValueError, match="naive"):
        store.due_summary(datetime(2024, 9, 1))
    with pytest.raises(ValueError, match="naive"):
        store.enqueue(
            workflow="wf",
            instance_id="inst",
            partition_key="x",
            window_start=datetime(2024, 9, 1),
            window_end=T0,
        )
    if backend == "sqlite":
        with store.engine.connect() as conn:
            raw = conn.execute(text("SELECT requested_at FROM amc_executions")).scalar_one()
        assert raw == "2024-09-01 12:00:00.123456"  # stored as UTC


def test_engine_setup(store: ExecutionStore, backend: str, tmp_path: object) -> None:
    with store.engine.connect() as conn:
        if backend == "sqlite":
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 5000
        else:
            assert store.engine.dialect.driver == "psycopg2"
    assert "password" not in repr(store).lower() or "***" in repr(store)


def test_postgres_url_normalized() -> None:
    from amc_pipeline.store.store import normalize_url

    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert normalize_url("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
