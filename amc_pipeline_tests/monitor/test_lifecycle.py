"""The monitor engine against the simulator: every lifecycle path an AMC execution can take."""

import time
from datetime import timedelta

from amc_pipeline.simulator import Fault, Scenario
from amc_pipeline_tests.constants import INSTANCE_ID
from amc_pipeline_tests.harness import rig

CAMPAIGN = {"name": "campaign_performance", "sql": "SELECT campaign, SUM(impressions) FROM t GROUP BY 1"}


def test_success_lands_in_store_with_output_columns(db_url):
    with rig([CAMPAIGN], database_url=db_url) as r:
        r.request("campaign_performance", "2026-10-05")
        reports = r.drive(lambda: r.status("campaign_performance", "2026-10-05") == "SUCCESS")
        execution = r.store.get_live("campaign_performance", "2026-10-05")
        attempt = execution.attempt
        assert attempt.amc_execution_id
        assert attempt.output_columns and "LONG" in attempt.output_columns
        assert attempt.completed_at is not None
        changes = [(c.from_status, c.to_status) for rep in reports for c in rep.changes]
        assert changes[0] == ("QUEUED", "PENDING")
        assert changes[-1][1] == "SUCCESS"
        # exactly one AMC execution for the window, sent with an EXPLICIT window and no Z
        amc = r.sim.executions()
        assert len(amc) == 1
        assert amc[0]["timeWindowStartOriginal"] == "2026-10-05T00:00:00"
        assert amc[0]["timeWindowEndOriginal"] == "2026-10-06T00:00:00"


def test_enqueue_never_duplicates(db_url):
    with rig([CAMPAIGN], database_url=db_url) as r:
        first, created1 = r.request("campaign_performance", "2026-10-05")
        second, created2 = r.request("campaign_performance", "2026-10-05")
        assert created1 and not created2 and first.id == second.id
        r.drive(lambda: r.status("campaign_performance", "2026-10-05") == "SUCCESS")
        assert len(r.sim.executions()) == 1


def test_failure_with_reason_is_final_for_query_errors(db_url):
    reason = "Query compile error: column x not found"
    scenarios = {"campaign_performance": Scenario(kind="fail", failure_reason=reason)}
    with rig([CAMPAIGN], database_url=db_url, scenarios=scenarios) as r:
        r.request("campaign_performance", "2026-10-05")
        r.drive(lambda: r.status("campaign_performance", "2026-10-05") == "FAILED")
        attempt = r.store.get_live("campaign_performance", "2026-10-05").attempt
        assert attempt.error_type == "QUERY"
        assert "column x not found" in attempt.failure_reason
        time.sleep(0.3)
        r.monitor_pass()
        assert len(r.store.attempts_for(attempt.execution_id)) == 1  # no retry for a query error


def test_sql_error_at_create_fails_without_amc_execution(db_url):
    scenarios = {"campaign_performance": Scenario(kind="sql_error")}
    with rig([CAMPAIGN], database_url=db_url, scenarios=scenarios) as r:
        r.request("campaign_performance", "2026-10-05")
        report = r.monitor_pass()
        assert report.submit_failed == 1
        attempt = r.store.get_live("campaign_performance", "2026-10-05").attempt
        assert attempt.status == "FAILED" and attempt.error_type == "QUERY"
        assert "Unable to compile" in attempt.failure_reason
        assert attempt.amc_execution_id is None
        assert r.sim.executions() == []


def test_retryable_failure_gets_a_new_attempt(db_url):
    scenarios = {"campaign_performance": Scenario(kind="fail", failure_reason="Internal service error, retry later")}
    with rig([CAMPAIGN], database_url=db_url, scenarios=scenarios, monitor={"max_retries": 2}) as r:
        execution, _ = r.request("campaign_performance", "2026-10-05")

        def retries_exhausted() -> bool:
            attempts = r.store.attempts_for(execution.id)
            return len(attempts) == 3 and attempts[-1].status == "FAILED"

        r.drive(retries_exhausted, timeout=30)
        attempts = r.store.attempts_for(execution.id)
        assert [a.attempt for a in attempts] == [1, 2, 3]
        assert [a.retry_count for a in attempts] == [0, 1, 2]
        assert all(a.error_type == "AMC_API" for a in attempts)
        assert len({a.amc_execution_id for a in attempts}) == 3
        assert len(r.sim.executions()) == 3


def test_stuck_pending_stays_pending_with_backoff(db_url):
    scenarios = {"campaign_performance": Scenario(kind="stuck_pending")}
    with rig([CAMPAIGN], database_url=db_url, scenarios=scenarios) as r:
        r.request("campaign_performance", "2026-10-05")
        for _ in range(8):
            r.monitor_pass()
            time.sleep(0.05)
        attempt = r.store.get_live("campaign_performance", "2026-10-05").attempt
        assert attempt.status == "PENDING"
        assert attempt.next_check_at > attempt.last_checked_at


def test_backoff_grows_to_the_maximum(db_url):
    scenarios = {"campaign_performance": Scenario(kind="stuck_running")}
    monitor = {"poll_initial_seconds": 30, "poll_max_seconds": 300}
    with rig([CAMPAIGN], database_url=db_url, scenarios=scenarios, monitor=monitor) as r:
        r.request("campaign_performance", "2026-10-05")
        r.monitor_pass()
        attempt = r.store.get_live("campaign_performance", "2026-10-05").attempt
        time.sleep(0.4)  # the simulator moves it to RUNNING; catch that first so only time passes below
        r.monitor_pass(now=attempt.submitted_at + timedelta(seconds=31))
        attempt = r.store.get_attempt(attempt.id)
        assert attempt.status == "RUNNING"
        waits = []
        for minutes in (2, 5, 30):  # pretend time passes: the next check is later each time
            now = attempt.submitted_at + timedelta(minutes=minutes)
            r.monitor_pass(now=now)
            attempt = r.store.get_attempt(attempt.id)
            waits.append((attempt.next_check_at - now).total_seconds())
        assert waits[0] < waits[1] <= waits[2] == 300


def test_cancelled_at_amc_and_publishing_and_unknown_status(db_url):
    scenarios = {
        "cancelled": Scenario(kind="cancelled"),
        "publishing": Scenario(kind="succeed", publishing=True, rows=3),
        "oddstatus": Scenario(kind="unknown_status", unknown_status_seconds=0.5, rows=2),
        "rejected": Scenario(kind="rejected"),
    }
    workflows = [{"name": n, "sql": "SELECT 1"} for n in scenarios]
    with rig(workflows, database_url=db_url, scenarios=scenarios, publishing_seconds=1.0) as r:
        for name in scenarios:
            r.request(name, "2026-10-05")

        def publishing_seen() -> bool:
            attempt = r.store.get_live("publishing", "2026-10-05").attempt
            return attempt.amc_status == "PUBLISHING" and attempt.status == "RUNNING"

        r.drive(publishing_seen, timeout=10)
        r.drive(lambda: all(r.status(n, "2026-10-05") in ("SUCCESS", "FAILED", "CANCELLED")
                                      for n in scenarios), timeout=30)
        assert r.status("cancelled", "2026-10-05") == "CANCELLED"
        assert r.status("publishing", "2026-10-05") == "SUCCESS"
        assert r.status("oddstatus", "2026-10-05") == "SUCCESS"
        assert r.status("rejected", "2026-10-05") == "FAILED"
        assert r.store.get_live("oddstatus", "2026-10-05").attempt.amc_status == "SUCCEEDED"


def test_pending_straight_to_succeeded_between_checks(db_url):
    with rig([CAMPAIGN], database_url=db_url, pending_seconds=0.2, running_seconds=0.2) as r:
        r.request("campaign_performance", "2026-10-05")
        r.monitor_pass()  # submit → PENDING
        assert r.status("campaign_performance", "2026-10-05") == "PENDING"
        time.sleep(0.8)  # AMC runs and finishes before we look again
        report = r.monitor_pass()
        assert [(c.from_status, c.to_status) for c in report.changes] == [("PENDING", "SUCCESS")]


def test_timeout_cancels_at_amc(db_url):
    scenarios = {"campaign_performance": Scenario(kind="stuck_running")}
    with rig([{**CAMPAIGN, "max_runtime_minutes": 15}], database_url=db_url, scenarios=scenarios) as r:
        r.request("campaign_performance", "2026-10-05")
        r.drive(lambda: r.status("campaign_performance", "2026-10-05") == "RUNNING")
        attempt = r.store.get_live("campaign_performance", "2026-10-05").attempt
        report = r.monitor_pass(now=attempt.submitted_at + timedelta(minutes=16))
        assert report.timed_out == 1
        assert r.status("campaign_performance", "2026-10-05") == "TIMEOUT"
        amc = {e["workflowExecutionId"]: e for e in r.sim.executions()}
        assert amc[attempt.amc_execution_id]["status"] == "CANCELLED"
        assert r.sim.stats().get("cancel", 0) == 1


def test_quota_reached_waits_for_next_day(db_url):
    with rig([CAMPAIGN], database_url=db_url, instance={"daily_execution_quota": 2}) as r:
        for day in ("2026-10-05", "2026-10-06", "2026-10-07"):
            r.request("campaign_performance", day)
        r.monitor_pass()
        statuses = [r.status("campaign_performance", d) for d in ("2026-10-05", "2026-10-06", "2026-10-07")]
        assert statuses.count("QUEUED") == 1
        assert len(r.sim.executions()) == 2
        queued = r.store.get_live("campaign_performance", "2026-10-07").attempt
        assert queued.next_check_at.hour == 0 and queued.next_check_at.minute == 0  # wakes at UTC midnight
        # The next UTC day: the quota is fresh (our store counts per UTC day; the simulator too).
        r.sim.advance_clock(86400)
        tomorrow = queued.next_check_at + timedelta(seconds=1)
        r.monitor_pass(now=tomorrow)
        assert r.status("campaign_performance", "2026-10-07") == "PENDING"
        assert len(r.sim.executions()) == 3


def test_max_active_executions_is_respected(db_url):
    with rig([CAMPAIGN], database_url=db_url, instance={"max_active_executions": 2},
             scenarios={"campaign_performance": Scenario(kind="stuck_running")}) as r:
        for day in range(1, 6):
            r.request("campaign_performance", f"2026-10-0{day}")
        for _ in range(3):
            r.monitor_pass()
        assert len(r.sim.executions()) == 2
        assert r.store.active_count(INSTANCE_ID) == 2


def test_lost_create_response_makes_exactly_one_execution(db_url):
    with rig([CAMPAIGN], database_url=db_url) as r:
        r.sim.add_fault(Fault(kind="lost_create_response", endpoint="create", times=1))
        r.request("campaign_performance", "2026-10-05")
        r.drive(lambda: r.status("campaign_performance", "2026-10-05") == "SUCCESS")
        amc = r.sim.executions()
        assert len(amc) == 1
        attempt = r.store.get_live("campaign_performance", "2026-10-05").attempt
        assert attempt.amc_execution_id == amc[0]["workflowExecutionId"]
        assert r.sim.stats()["create"] == 1


def test_dropped_create_with_nothing_created_is_created_again(db_url):
    with rig([CAMPAIGN], database_url=db_url) as r:
        r.sim.add_fault(Fault(kind="drop", endpoint="create", times=1))
        r.request("campaign_performance", "2026-10-05")
        r.drive(lambda: r.status("campaign_performance", "2026-10-05") == "SUCCESS")
        assert len(r.sim.executions()) == 1


def test_unknown_id_fails_after_consecutive_errors(db_url):
    with rig([CAMPAIGN], database_url=db_url, scenarios={"campaign_performance": Scenario(kind="stuck_running")}) as r:
        r.request("campaign_performance", "2026-10-05")
        r.monitor_pass()
        attempt = r.store.get_live("campaign_performance", "2026-10-05").attempt
        r.store.update_attempt(attempt.id, amc_execution_id="00000000-0000-0000-0000-000000000000")
        r.drive(lambda: r.status("campaign_performance", "2026-10-05") == "FAILED", timeout=20)
        failed = r.store.get_attempt(attempt.id)
        assert failed.error_count >= 5
        assert "consecutive errors" in failed.failure_reason


def test_outage_fails_no_execution(db_url):
    with rig([CAMPAIGN], database_url=db_url, scenarios={"campaign_performance": Scenario(kind="stuck_running")}) as r:
        r.request("campaign_performance", "2026-10-05")
        r.monitor_pass()
        r.sim.add_fault(Fault(kind="error500", endpoint="*"))
        reports = []
        for _ in range(8):
            reports.append(r.monitor_pass())
            time.sleep(0.1)
        assert any(rep.outage for rep in reports)
        assert r.status("campaign_performance", "2026-10-05") in ("PENDING", "RUNNING")
        r.sim.clear_faults()
        r.drive(lambda: r.status("campaign_performance", "2026-10-05") == "RUNNING")
        assert r.store.get_live("campaign_performance", "2026-10-05").attempt.error_count == 0
