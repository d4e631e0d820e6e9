"""Polling many active executions on one instance: list pages, not one GET each.

Against the real simulator over HTTP (no wall-clock assertions): request counts from the PassReport
and the simulator's own stats, and what the pass wrote to the store. Also the store's batch helpers
the pass uses (record_checks, due_checks, attempt_pairs), on SQLite.
"""

import math
import time
from datetime import UTC, date, datetime, timedelta

from amc_pipeline.amc.client import execution_body
from amc_pipeline.monitor.events import PassReport
from amc_pipeline.monitor.poll import LIST_SLACK, PAGE_SIZE, _slices, poll_due
from amc_pipeline.monitor.submit import submit_queued
from amc_pipeline.simulator import Scenario
from amc_pipeline.store.store import ExecutionStore
from amc_pipeline_tests.constants import INSTANCE_ID
from amc_pipeline_tests.harness import Rig, rig

SQL = "SELECT campaign, SUM(impressions) FROM t GROUP BY 1"
BIG_INSTANCE = {"max_active_executions": 1000, "daily_execution_quota": 100_000}
#: Past AMC's 200 per account too: this file is about polling many, not about the limits.
BIG_LIMITS = {"account": {"max_active_executions": 100_000}, "max_active_executions": 100_000}
START = date(2025, 1, 1)


def workflow(name: str) -> dict:
    return {"name": name, "sql": SQL, "start_date": START.isoformat()}


def enqueue_and_submit(r: Rig, name: str, count: int, offset: int = 0) -> list[int]:
    """`count` executions of workflow `name` queued and submitted to the simulator; their attempt ids."""
    for i in range(offset, offset + count):
        r.request(name, (START + timedelta(days=i)).isoformat())
    report = submit_queued(r.store, r.client, r.config, report=PassReport())
    assert report.submitted == count, report.summary()
    return [a.id for _, a in r.store.active_attempts() if a.amc_execution_id]


def poll_pass(r: Rig, now: datetime | None = None) -> tuple[PassReport, dict[str, int]]:
    before = r.sim.stats()
    report = poll_due(r.store, r.async_client, r.config, now=now, report=PassReport())
    after = r.sim.stats()
    return report, {k: after.get(k, 0) - before.get(k, 0) for k in after}


def test_250_active_polled_with_list_pages(db_url):
    n = 250
    with rig([workflow("bulk")], database_url=db_url, instance=BIG_INSTANCE, **BIG_LIMITS, daily_quota=100_000,
             pending_seconds=600.0, scenarios={"bulk": Scenario(kind="stuck_running")}) as r:
        enqueue_and_submit(r, "bulk", n)
        before = {a.id: a for _, a in r.store.active_attempts()}
        assert len(before) == n and all(a.status == "PENDING" for a in before.values())
        now = datetime.now(UTC) + timedelta(seconds=1)  # every attempt due
        report, served = poll_pass(r, now)

        pages = math.ceil(n / PAGE_SIZE)
        assert report.get_requests == 0 and served.get("get", 0) == 0
        # one page per 100 due executions; slices never list the same records twice
        assert report.list_requests <= 2 * pages
        assert served["list"] == report.list_requests
        assert report.checked == n and report.errors == 0 and not report.changes
        after = {a.id: a for _, a in r.store.active_attempts()}
        for attempt_id, old in before.items():
            new = after[attempt_id]
            assert new.status == "PENDING"
            assert new.last_checked_at == now
            assert new.next_check_at > old.next_check_at and new.next_check_at > now
            assert new.error_count == 0
        assert r.store.due_summary(now).poll_due == 0


def test_status_changes_found_on_list_pages_are_recorded(db_url):
    steady, done = 40, 30
    scenarios = {"steady": Scenario(kind="stuck_pending"), "done": Scenario(kind="succeed")}
    with rig([workflow("steady"), workflow("done")], database_url=db_url, instance=BIG_INSTANCE, **BIG_LIMITS,
             daily_quota=100_000, scenarios=scenarios) as r:
        enqueue_and_submit(r, "steady", steady)
        enqueue_and_submit(r, "done", done, offset=steady)
        deadline = time.monotonic() + 20
        while sum(e["status"] == "SUCCEEDED" for e in r.sim.executions()) < done:
            assert time.monotonic() < deadline, "simulator executions did not finish"
            time.sleep(0.1)
        report, served = poll_pass(r, datetime.now(UTC) + timedelta(seconds=1))

        assert report.get_requests == 0 and served.get("get", 0) == 0
        assert 1 <= report.list_requests <= 2 * math.ceil((steady + done) / PAGE_SIZE)
        assert report.checked == steady + done
        moves = {(c.workflow, c.from_status, c.to_status) for c in report.changes}
        assert moves == {("done", "PENDING", "SUCCESS")} and len(report.changes) == done
        for execution in r.store.list_executions(workflow="done"):
            attempt = execution.attempt
            assert attempt.status == "SUCCESS" and attempt.amc_status == "SUCCEEDED"
            assert attempt.output_columns and attempt.completed_at is not None
            assert attempt.next_check_at is None
        assert all(e.attempt.status == "PENDING" for e in r.store.list_executions(workflow="steady"))


def test_other_clients_executions_on_the_instance_are_ignored(db_url):
    ours = 60
    scenarios = {"ours": Scenario(kind="stuck_pending"), "other": Scenario(kind="succeed")}
    with rig([workflow("ours")], database_url=db_url, instance=BIG_INSTANCE, **BIG_LIMITS, daily_quota=100_000,
             scenarios=scenarios) as r:
        instance = r.config.instance(INSTANCE_ID)
        window = datetime(2025, 3, 1)

        def foreign(k: int) -> None:
            for i in range(k):
                r.client.create_execution(instance, execution_body(
                    workflow_id=f"other-{i}", sql="SELECT 1", window_start=window,
                    window_end=window + timedelta(days=1), time_zone="UTC", timeout_seconds=900))

        foreign(70)  # before ours, among ours and after ours: all inside the listed creation times
        enqueue_and_submit(r, "ours", ours // 2)
        foreign(70)
        enqueue_and_submit(r, "ours", ours // 2, offset=ours // 2)
        foreign(70)
        known = r.store.amc_ids_for(INSTANCE_ID)
        assert len(known) == ours and len(r.sim.executions()) == ours + 210

        report, served = poll_pass(r, datetime.now(UTC) + timedelta(seconds=1))
        assert report.get_requests == 0 and served.get("get", 0) == 0
        # their executions share our pages (270 records in the listed creation times), nothing more
        assert report.list_requests <= 2 * math.ceil((ours + 210) / PAGE_SIZE)
        assert report.checked == ours and report.errors == 0 and not report.changes
        assert r.store.amc_ids_for(INSTANCE_ID) == known  # nothing adopted or invented
        assert all(e.attempt.status == "PENDING" for e in r.store.list_executions(workflow="ours"))


# ------------------------------------------------------------------------------ slicing (pure)

T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)


def _check_cover(bounds, times):
    """Ranges are contiguous and disjoint at whole seconds, and cover every time (and the slack)."""
    assert bounds[0][0] == min(times).replace(microsecond=0) - LIST_SLACK
    assert bounds[-1][1] is None
    for (_, hi), (lo, _) in zip(bounds, bounds[1:], strict=False):
        assert hi == lo - timedelta(seconds=1)
    for t in times:
        second = t.replace(microsecond=0)
        inside = [b for b in bounds if b[0] <= second and (b[1] is None or second <= b[1])]
        assert len(inside) == 1


def test_slices_are_full_pages_and_disjoint():
    times = [T0 + timedelta(seconds=i * 0.7) for i in range(10_000)]
    bounds = _slices(times, concurrency=10)
    assert len(bounds) == 10
    _check_cover(bounds, times)
    per_slice = [sum(1 for t in times if lo <= t.replace(microsecond=0) and (hi is None or
                     t.replace(microsecond=0) <= hi)) for lo, hi in bounds]
    assert sum(per_slice) == len(times) and max(per_slice) <= 1000


def test_slices_never_split_one_second():
    """Everything created in one second: one range, not `concurrency` ranges over the same records."""
    times = [T0 + timedelta(microseconds=i) for i in range(1000)]
    assert _slices(times, concurrency=10) == [(T0 - LIST_SLACK, None)]
    few = [T0, T0 + timedelta(seconds=1)]
    assert len(_slices(few, concurrency=10)) == 1


def test_slices_for_250():
    times = [T0 + timedelta(seconds=i) for i in range(250)]
    bounds = _slices(times, concurrency=10)
    assert len(bounds) == 3
    _check_cover(bounds, times)


# ------------------------------------------------------------------------------ store batch helpers


def _active(store: ExecutionStore, n: int, now: datetime) -> list[int]:
    ids = []
    for i in range(n):
        execution, _ = store.enqueue(workflow="wf", instance_id="inst", partition_key=f"k{i}",
                                     window_start=T0, window_end=T0, now=now)
        store.transition(execution.attempt.id, "QUEUED", "PENDING", now=now, amc_execution_id=f"amc-{i}",
                         next_check_at=now - timedelta(seconds=i))
        ids.append(execution.attempt.id)
    return ids


def test_record_checks_batch_with_status_cas(db_url):
    now = T0
    with ExecutionStore(db_url) as store:
        ids = _active(store, 5, now)
        store.record_check(ids[0], now=now, next_check_at=now, error="HTTP 404", error_type="RESOURCE")
        assert store.get_attempt(ids[0]).error_count == 1
        store.transition(ids[4], "PENDING", "RUNNING", now=now)  # moved by "another run"
        later = now + timedelta(minutes=1)
        updated = store.record_checks([(i, "PENDING", later + timedelta(seconds=i)) for i in ids], now=later)
        assert updated == 4
        for i in ids[:4]:
            attempt = store.get_attempt(i)
            assert attempt.last_checked_at == later
            assert attempt.next_check_at == later + timedelta(seconds=i)
            assert attempt.error_count == 0
        assert store.get_attempt(ids[0]).last_error == "HTTP 404"  # kept for the record
        skipped = store.get_attempt(ids[4])
        assert skipped.status == "RUNNING" and skipped.last_checked_at is None
        assert store.record_checks([], now=later) == 0


def test_due_checks_match_due_for_poll_and_pairs_load(db_url):
    now = T0
    with ExecutionStore(db_url) as store:
        ids = _active(store, 7, now)
        store.record_checks([(ids[0], "PENDING", now + timedelta(hours=1))], now=now)  # not due
        light = store.due_checks(now)
        full = store.due_for_poll(now)
        assert [c.attempt_id for c in light] == [a.id for _, a in full]
        by_id = {a.id: (e, a) for e, a in full}
        for check in light:
            execution, attempt = by_id[check.attempt_id]
            assert (check.execution_id, check.workflow, check.instance_id) == (
                execution.id, execution.workflow, execution.instance_id)
            assert (check.status, check.amc_status, check.amc_execution_id) == (
                attempt.status, attempt.amc_status, attempt.amc_execution_id)
            assert (check.created_at, check.submitted_at, check.status_changed_at) == (
                attempt.created_at, attempt.submitted_at, attempt.status_changed_at)
        assert [c.attempt_id for c in store.due_checks(now, limit=2)] == [a.id for _, a in full[:2]]
        assert store.due_checks(now, instance_id="elsewhere") == []
        pairs = store.attempt_pairs(ids + [10_000])
        assert set(pairs) == set(ids)
        assert all(pairs[i][1].id == i and pairs[i][0].id == pairs[i][1].execution_id for i in ids)
