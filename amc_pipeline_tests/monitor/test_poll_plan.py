"""The per-instance poll policy: every active execution of an instance checked in one pass, each one's
next check planned from what the store knows of its workflow's past run times.

Pure plan tests on a simulated clock, the store's `run_times`, and poll passes against the simulator with
`now=` moved by hand (the simulator's executions stay RUNNING: only our clock moves).
"""

import time
from datetime import UTC, datetime, timedelta

import pytest

from amc_pipeline.config import MonitorConfig
from amc_pipeline.monitor.transitions import RunTimePlan, RunTimes, instance_next_pass, quantile
from amc_pipeline.simulator import Scenario
from amc_pipeline.store.records import Attempt
from amc_pipeline.store.store import ExecutionStore
from amc_pipeline_tests.constants import INSTANCE_ID
from amc_pipeline_tests.harness import rig

T0 = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
POLICY = MonitorConfig()  # the defaults, which are meant for real AMC
#: The rig's fast monitor settings with the real poll timings back (passes happen at `now=` we choose).
REAL_POLL = {"poll_initial_seconds": 30, "poll_max_seconds": 300}
SQL = "SELECT campaign, SUM(impressions) FROM t GROUP BY 1"
#: Past running times (minutes) of a workflow that usually takes 25 minutes.
USUAL_25 = [20, 22, 24, 25, 25, 26, 28, 30, 32, 35]


def attempt(status: str, submitted: datetime, started: datetime | None = None) -> Attempt:
    return Attempt(
        id=1, execution_id=1, attempt=1, status=status, client_token="t", amc_execution_id="x",
        amc_request_id=None, amc_status=status, created_at=submitted, submit_started_at=submitted,
        submitted_at=submitted, started_at=started, completed_at=None, status_changed_at=started or submitted,
        next_check_at=None, last_checked_at=None, error_count=0, last_error=None, error_type=None,
        retry_count=0, failure_reason=None, execution_time_seconds=None, output_columns=None,
    )


def seconds(minutes: list[float]) -> list[float]:
    return [m * 60.0 for m in minutes]


# ------------------------------------------------------------------------------------------ the plan


def test_quantile_interpolates():
    assert quantile([1.0], 0.5) == 1.0
    assert quantile([0.0, 10.0], 0.25) == 2.5
    assert quantile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0
    with pytest.raises(ValueError):
        quantile([], 0.5)


def test_new_execution_gets_early_checks():
    """AMC rejects bad SQL or missing permissions within a minute: checked every 30 s for 90 s."""
    plan = RunTimePlan(POLICY, {"wf": seconds(USUAL_25)})
    item = attempt("PENDING", T0)
    for age in (0, 30, 60, 89):
        assert plan.wait_seconds("wf", item, T0 + timedelta(seconds=age)) == 30
    assert plan.wait_seconds("wf", item, T0 + timedelta(seconds=91)) == POLICY.poll_pending_seconds == 60


def test_usual_25_minute_run_needs_few_checks_in_its_first_15_minutes():
    """Walk a simulated clock: each check happens when the plan says (on 15 s sensor ticks)."""
    plan = RunTimePlan(POLICY, {"wf": seconds(USUAL_25)})
    started = T0 + timedelta(seconds=60)
    watch_from = RunTimes.of(seconds(USUAL_25)).watch_from(POLICY)
    assert 15 * 60 < watch_from < 17 * 60  # 0.75 x p10 of 20..35 minutes
    now, checks = T0 + timedelta(seconds=30), []
    while now < T0 + timedelta(minutes=40):
        checks.append(now)
        item = attempt("RUNNING", T0, started) if now >= started else attempt("PENDING", T0)
        due = plan.next_check("wf", item, now)
        now = T0 + timedelta(seconds=15 * -(-(due - T0).total_seconds() // 15))  # the next sensor tick
    first_15 = [c for c in checks if c < T0 + timedelta(minutes=15)]
    assert len(first_15) <= 8, first_15
    # From the watch on (running time counted from one PENDING gap before RUNNING was seen): 45 s apart.
    watching = [c for c in checks if (c - started).total_seconds() + 60 >= watch_from]
    gaps = [(b - a).total_seconds() for a, b in zip(watching, watching[1:], strict=False)]
    assert gaps and max(gaps) <= 45 + 15 and min(gaps) >= 45
    assert watching[0] - started <= timedelta(minutes=16)  # watched well before the fastest past run (20 min)


def test_quiet_gap_never_passes_the_watch_start_and_is_bounded():
    plan = RunTimePlan(POLICY, {"wf": seconds(USUAL_25)})
    watch_from = RunTimes.of(seconds(USUAL_25)).watch_from(POLICY)
    for running in range(0, int(watch_from), 20):
        started = T0 + timedelta(minutes=2)
        now = started + timedelta(seconds=running)
        wait = plan.wait_seconds("wf", attempt("RUNNING", T0, started), now)
        assert POLICY.poll_watch_seconds <= wait <= POLICY.poll_max_seconds
        assert running + 60 + wait <= max(watch_from, running + 60 + POLICY.poll_watch_seconds)


def test_far_past_every_known_run_backs_off_to_the_maximum():
    plan = RunTimePlan(POLICY, {"wf": seconds(USUAL_25)})
    started = T0 + timedelta(minutes=2)
    tail = RunTimes.of(seconds(USUAL_25)).tail_from(POLICY)  # 2 x 35 minutes
    assert plan.wait_seconds("wf", attempt("RUNNING", T0, started), started + timedelta(seconds=tail - 120)) == 45
    just_past = plan.wait_seconds("wf", attempt("RUNNING", T0, started), started + timedelta(seconds=tail + 60))
    assert 45 <= just_past < 300
    assert plan.wait_seconds("wf", attempt("RUNNING", T0, started), started + timedelta(hours=5)) == 300


def test_without_history_other_workflows_of_the_instance_stand_in_then_age_backoff():
    started = T0 + timedelta(minutes=2)
    pooled = RunTimePlan(POLICY, {"a": seconds([20, 25]), "b": seconds([30])})  # 3 runs between them
    assert pooled.runs_for("new") == RunTimes.of(seconds([20, 25, 30]))
    assert pooled.runs_for("a") == RunTimes.of(seconds([20, 25, 30]))  # 2 of its own: not enough alone
    nothing = RunTimePlan(POLICY, {"a": seconds([20])})
    assert nothing.runs_for("new") is None
    waits = [nothing.wait_seconds("new", attempt("RUNNING", T0, started), started + timedelta(minutes=m))
             for m in (1, 3, 10, 30)]
    assert waits[0] == 60 and waits[0] < waits[1] < waits[2] == waits[3] == 300  # half the running time


def test_every_gap_is_bounded_by_poll_max_even_with_tiny_settings():
    policy = MonitorConfig(poll_initial_seconds=0.05, poll_max_seconds=0.2)  # the test rig's settings
    plan = RunTimePlan(policy, {"wf": seconds(USUAL_25)})
    for status, started in (("PENDING", None), ("RUNNING", T0)):
        for minutes in (0, 1, 20, 200):
            wait = plan.wait_seconds("wf", attempt(status, T0, started), T0 + timedelta(minutes=minutes))
            assert 0.05 <= wait <= 0.2


def test_instance_next_pass_is_the_earliest_need():
    plan = RunTimePlan(POLICY, {"wf": seconds(USUAL_25)})
    now = T0 + timedelta(minutes=10)
    quiet = attempt("RUNNING", T0, T0 + timedelta(minutes=1))  # 10 min into a 25 min workflow
    fresh = attempt("PENDING", now - timedelta(seconds=10))  # just submitted
    assert plan.next_check("wf", quiet, now) > now + timedelta(seconds=60)
    assert instance_next_pass(plan, [("wf", quiet), ("wf", fresh)], now) == now + timedelta(seconds=30)
    assert instance_next_pass(plan, [], now) is None


# ------------------------------------------------------------------------------------- store history


def seed_history(store: ExecutionStore, workflow: str, minutes: list[float], *, instance_id: str = INSTANCE_ID,
                 start: datetime = T0) -> None:
    """Finished runs of `workflow` (SUCCESS with AMC's running time), one window each."""
    for i, m in enumerate(minutes):
        execution, _ = store.enqueue(workflow=workflow, instance_id=instance_id,
                                     partition_key=f"hist-{instance_id}-{i}", window_start=start,
                                     window_end=start, now=start)
        attempt_id = execution.attempt.id
        begun = start + timedelta(hours=i)
        store.transition(attempt_id, "QUEUED", "PENDING", now=begun,
                         amc_execution_id=f"hist-{workflow}-{instance_id}-{i}")
        store.transition(attempt_id, "PENDING", "RUNNING", now=begun)
        store.transition(attempt_id, "RUNNING", "SUCCESS", now=begun + timedelta(minutes=m),
                         execution_time_seconds=m * 60.0, next_check_at=None)


def test_run_times_newest_first_per_workflow_and_instance(db_url):
    with ExecutionStore(db_url) as store:
        seed_history(store, "wf", [10, 20, 30, 40])
        seed_history(store, "other", [5])
        seed_history(store, "wf", [99], instance_id="elsewhere")
        failed, _ = store.enqueue(workflow="wf", instance_id=INSTANCE_ID, partition_key="failed",
                                  window_start=T0, window_end=T0, now=T0)
        store.transition(failed.attempt.id, "QUEUED", "PENDING", now=T0, amc_execution_id="f")
        store.transition(failed.attempt.id, "PENDING", "FAILED", now=T0, execution_time_seconds=1.0)
        assert store.run_times(INSTANCE_ID) == {"wf": [2400.0, 1800.0, 1200.0, 600.0], "other": [300.0]}
        assert store.run_times(INSTANCE_ID, per_workflow=2) == {"wf": [2400.0, 1800.0], "other": [300.0]}
        assert store.run_times("elsewhere") == {"wf": [5940.0]}
        assert store.run_times("nobody") == {}
        # Many instances in one query: the same answers, keyed by instance.
        assert store.run_times_for([INSTANCE_ID, "elsewhere", "nobody"], per_workflow=2) == {
            INSTANCE_ID: {"wf": [2400.0, 1800.0], "other": [300.0]}, "elsewhere": {"wf": [5940.0]}}


def test_due_instances_and_every_active_checks(db_url):
    with ExecutionStore(db_url) as store:
        for i, (instance, due) in enumerate([("a", True), ("a", False), ("b", False)]):
            execution, _ = store.enqueue(workflow="wf", instance_id=instance, partition_key=f"k{i}",
                                         window_start=T0, window_end=T0, now=T0)
            store.transition(execution.attempt.id, "QUEUED", "PENDING", now=T0, amc_execution_id=f"x{i}",
                             next_check_at=T0 - timedelta(seconds=1) if due else T0 + timedelta(hours=1))
        assert store.due_instances(T0) == ["a"]
        assert len(store.due_checks(T0, instance_id="a")) == 1
        every = store.due_checks(instance_id="a", every_active=True)
        assert [c.amc_execution_id for c in every] == ["x0", "x1"]  # due or not, earliest next check first
        assert [c.instance_id for c in store.due_checks(every_active=True)].count("b") == 1


# ------------------------------------------------------------------------- poll passes per instance

CAMPAIGN = {"name": "campaign_performance", "sql": SQL}
OTHER = {"name": "audience_overlap", "sql": SQL}


def _running(r, keys: list[str], workflow: str = "campaign_performance") -> list[Attempt]:
    """Submit the queued windows (now), then pass every 30 simulated seconds until AMC says RUNNING
    (the simulator moves them in real time; between passes only our clock moves)."""
    r.monitor_pass()
    submitted = r.store.get_live(workflow, keys[0]).attempt.submitted_at
    deadline = time.monotonic() + 10
    for step in range(1, 1000):
        time.sleep(0.1)
        r.monitor_pass(now=submitted + timedelta(seconds=1 + 30 * step))
        attempts = [r.store.get_live(workflow, k).attempt for k in keys]
        if all(a.status == "RUNNING" for a in attempts):
            return attempts
        assert time.monotonic() < deadline, [a.status for a in attempts]
    raise AssertionError("not RUNNING")


def test_one_due_execution_brings_every_active_one_of_its_instance_into_one_list_page(db_url):
    keys = ["2026-10-05", "2026-10-06", "2026-10-07"]
    with rig([CAMPAIGN], database_url=db_url, monitor=REAL_POLL,
             scenarios={"campaign_performance": Scenario(kind="stuck_running")}) as r:
        for key in keys:
            r.request("campaign_performance", key)
        attempts = _running(r, keys)
        t0 = attempts[0].submitted_at
        later = t0 + timedelta(hours=3)
        for a in attempts:  # only the first is due at `now`
            r.store.record_checks([(a.id, "RUNNING", t0 + timedelta(minutes=10) if a is attempts[0] else later)],
                                  now=t0)
        now = t0 + timedelta(minutes=10)
        assert r.store.due_summary(now).poll_due == 1
        report = r.monitor_pass(now=now)
        assert report.checked == 3 and report.list_requests == 1 and report.get_requests == 0
        for a in attempts:
            fresh = r.store.get_attempt(a.id)
            assert fresh.last_checked_at == now and fresh.next_check_at > now
        assert r.store.due_summary(now).poll_due == 0


def test_one_active_execution_is_checked_with_a_get(db_url):
    with rig([CAMPAIGN], database_url=db_url, monitor=REAL_POLL,
             scenarios={"campaign_performance": Scenario(kind="stuck_running")}) as r:
        r.request("campaign_performance", "2026-10-05")
        (a,) = _running(r, ["2026-10-05"])
        report = r.monitor_pass(now=a.submitted_at + timedelta(minutes=5))
        assert report.checked == 1 and report.get_requests == 1 and report.list_requests == 0


def test_next_checks_follow_the_workflows_past_run_times(db_url):
    """A workflow that usually takes 25 minutes: quiet (≤ 5 min gaps) until about 15 minutes of
    running, then every 45 s; a workflow with no past runs of its own uses the instance's."""
    with rig([CAMPAIGN, OTHER], database_url=db_url, monitor=REAL_POLL,
             scenarios={"campaign_performance": Scenario(kind="stuck_running"),
                        "audience_overlap": Scenario(kind="stuck_running")}) as r:
        seed_history(r.store, "campaign_performance", USUAL_25, start=datetime.now(UTC) - timedelta(days=20))
        r.request("campaign_performance", "2026-10-05")
        (a,) = _running(r, ["2026-10-05"])
        started = a.started_at
        assert started is not None
        waits = {}
        for minutes in (3, 8, 16, 30, 150):
            now = started + timedelta(minutes=minutes)
            r.monitor_pass(now=now)
            fresh = r.store.get_attempt(a.id)
            waits[minutes] = (fresh.next_check_at - now).total_seconds()
        watch_from = RunTimes.of(seconds(USUAL_25)).watch_from(POLICY) / 60  # about 16 minutes
        assert 15 < watch_from < 17
        assert waits[3] == 300 and 45 <= waits[8] <= 300  # quiet, never past the watch start
        assert (8 + 1 + waits[8] / 60) <= watch_from + 0.75 + 1e-9
        assert waits[16] == waits[30] == 45  # watching: the detection latency bound
        assert waits[150] == 300  # far past every known run (35 min): backed off

        # A new workflow on the same instance: the instance's other runs stand in for its own.
        r.request("audience_overlap", "2026-10-05")
        (b,) = _running(r, ["2026-10-05"], workflow="audience_overlap")
        now = b.started_at + timedelta(minutes=16)
        r.monitor_pass(now=now)
        assert (r.store.get_attempt(b.id).next_check_at - now).total_seconds() == 45
