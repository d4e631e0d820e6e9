"""AMC down for several minutes: no execution is failed for it, health goes red, then green again.

Every AMC endpoint answers 500 or drops the connection. Monitor passes run at simulated times over ten
minutes (`now=`), recording the poll heartbeat as the monitor job's op does. Nothing may become FAILED
(an outage is not the execution's failure), `monitor_health` with a real AMC probe is red; after the
faults are cleared one successful pass makes it green and the executions finish.
"""

import time
from datetime import UTC, datetime, timedelta

from amc_pipeline.health.status import amc_probe_for, monitor_health
from amc_pipeline.monitor.events import PassReport
from amc_pipeline.monitor.poll import poll_due
from amc_pipeline.monitor.submit import submit_queued
from amc_pipeline.simulator import Fault
from amc_pipeline_tests.harness import rig
from amc_pipeline_tests.reliability.common import resources

WORKFLOW = {"name": "amc_outage", "sql": "SELECT 1", "start_date": "2026-09-01"}


def monitor_job_pass(r, now: datetime) -> PassReport:
    """What the amc_monitor job's two ops do, at a given time (heartbeat included)."""
    report = PassReport()
    submit_queued(r.store, r.client, r.config, now=now, report=report)
    poll_due(r.store, r.async_client, r.config, now=now, report=report)
    r.store.record_heartbeat("poll", ok=not report.outage, detail=report.summary(), now=now)
    return report


def test_amc_down_for_minutes_fails_nothing_and_health_recovers(tmp_path):
    with rig([WORKFLOW], database_url=f"sqlite:///{tmp_path / 'store.db'}",
             monitor={"poll_initial_seconds": 30, "poll_max_seconds": 60}) as r:
        probe = amc_probe_for(resources(r, retry_budget_seconds=1.0)["amc"].get_client, r.config)
        for key in ("2026-09-01", "2026-09-02", "2026-09-03"):
            r.request("amc_outage", key)
        start = datetime.now(UTC)
        monitor_job_pass(r, start)
        assert {r.status("amc_outage", k) for k in ("2026-09-01", "2026-09-02", "2026-09-03")} <= {
            "PENDING", "RUNNING"}
        assert monitor_health(r.store, r.config, now=start, amc_probe=probe).healthy

        # AMC goes down: every endpoint (token included) answers 500 or drops the connection.
        r.sim.add_fault(Fault(kind="error500", probability=0.5))
        r.sim.add_fault(Fault(kind="drop"))
        r.request("amc_outage", "2026-09-04")  # requested during the outage: stays queued
        outages = 0
        for step in range(1, 21):  # ten simulated minutes, a pass every 30 s
            now = start + timedelta(seconds=30 * step)
            report = monitor_job_pass(r, now)
            outages += report.outage
            assert report.submit_failed == 0
            statuses = {e.partition_key: e.attempt.status for e in r.store.list_executions(workflow="amc_outage")}
            assert "FAILED" not in statuses.values(), statuses
        assert outages >= 5  # passes with checks due (the others had nothing due yet)
        assert r.status("amc_outage", "2026-09-04") == "QUEUED"
        red = monitor_health(r.store, r.config, now=now, amc_probe=probe)
        assert not red.healthy
        assert red.facts["amc_reachable"] is False
        assert any(p.startswith("AMC unreachable") for p in red.problems), red.problems
        assert any("could not reach AMC" in p for p in red.problems), red.problems
        for execution in r.store.list_executions(workflow="amc_outage"):
            assert execution.attempt.status != "FAILED" and execution.attempt.failure_reason is None

        # AMC is back: one successful pass turns health green; everything finishes.
        r.sim.clear_faults()
        later = now + timedelta(seconds=60)
        monitor_job_pass(r, later)
        green = monitor_health(r.store, r.config, now=later, amc_probe=probe)
        assert green.healthy, green.problems
        t = later
        for _ in range(40):
            if all(r.status("amc_outage", k) == "SUCCESS"
                   for k in ("2026-09-01", "2026-09-02", "2026-09-03", "2026-09-04")):
                break
            t += timedelta(seconds=60)
            monitor_job_pass(r, t)
            time.sleep(0.1)  # AMC's own (real-time) progress
        assert all(r.status("amc_outage", k) == "SUCCESS"
                   for k in ("2026-09-01", "2026-09-02", "2026-09-03", "2026-09-04"))
        assert len(r.sim.executions()) == 4  # no duplicate created by the outage's failed creates
        print(f"\nAMC outage figures: 10 simulated minutes, {outages} passes saw the outage, executions "
              f"failed 0; health red with {len(red.problems)} problems, green after one good pass")
