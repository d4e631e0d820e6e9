"""Packing in the submitter and the lifecycle, against the simulator over HTTP and a real store."""

from datetime import date, timedelta

from amc_pipeline.monitor.cancel import cancel_executions, cancel_targets
from amc_pipeline.monitor.events import PassReport
from amc_pipeline.monitor.submit import submit_queued
from amc_pipeline.monitor.windows import request_window
from amc_pipeline.partitions import utc_day_start, window_for
from amc_pipeline.simulator import Fault, Scenario
from amc_pipeline_tests.constants import INSTANCE_ID
from amc_pipeline_tests.harness import now_utc, rig


def packed(max_windows: int = 31, settle_seconds: float = 0) -> dict:
    return {"name": "daily", "sql": "SELECT date, SUM(impressions) FROM t GROUP BY 1",
            "packing": {"max_windows": max_windows, "split_column": "date", "settle_seconds": settle_seconds}}


def keys(first: str, n: int) -> list[str]:
    start = date.fromisoformat(first)
    return [(start + timedelta(days=i)).isoformat() for i in range(n)]


def spans(r) -> list[tuple[str, str]]:
    return sorted((e["timeWindowStartOriginal"][:10], e["timeWindowEndOriginal"][:10]) for e in r.sim.executions())


def test_packs_contiguous_queued_windows_up_to_max_windows(db_url):
    window_keys = keys("2026-10-01", 4) + keys("2026-10-06", 5)  # a gap on 10-05
    with rig([packed(max_windows=3)], database_url=db_url) as r:
        for key in window_keys:
            r.request("daily", key)
        report = submit_queued(r.store, r.client, r.config)
        assert report.submitted == 4
        assert spans(r) == [("2026-10-01", "2026-10-04"), ("2026-10-04", "2026-10-05"),
                            ("2026-10-06", "2026-10-09"), ("2026-10-09", "2026-10-11")]
        # One slot and one quota unit per pack, whatever it covers.
        assert r.store.active_count(INSTANCE_ID) == 4
        assert r.store.submitted_since(INSTANCE_ID, utc_day_start(now_utc())) == 4
        leaders = {r.store.get_live("daily", k).attempt.pack_leader_id for k in window_keys}
        assert len(leaders - {None}) == 3  # the lone 10-04 window is sent as itself
        # Each window's status follows its pack; one status check per AMC execution.
        r.drive(lambda: all(r.status("daily", k) == "SUCCESS" for k in window_keys))
        assert len(r.sim.executions()) == 4


def test_pack_within_active_limit_and_quota(db_url):
    with rig([packed(max_windows=3)], database_url=db_url,
             instance={"max_active_executions": 2, "daily_execution_quota": 3}) as r:
        for key in keys("2026-10-01", 12):
            r.request("daily", key)
        submit_queued(r.store, r.client, r.config)
        assert len(r.sim.executions()) == 2  # two slots: two packs of three windows
        assert [r.status("daily", k) for k in keys("2026-10-07", 6)] == ["QUEUED"] * 6
        r.drive(lambda: len(r.sim.executions()) == 3 and all(
            r.status("daily", k) == "SUCCESS" for k in keys("2026-10-01", 9)))
        assert [r.status("daily", k) for k in keys("2026-10-10", 3)] == ["QUEUED"] * 3  # quota used: tomorrow


def test_landed_and_running_windows_are_never_repacked(db_url):
    with rig([packed()], database_url=db_url) as r:
        for key in keys("2026-10-01", 3):
            r.request("daily", key)
        r.drive(lambda: all(r.status("daily", k) == "SUCCESS" for k in keys("2026-10-01", 3)))
        # A window requested alone later, beside the finished pack, gets its own execution.
        r.request("daily", "2026-10-04")
        for key in keys("2026-10-01", 3):
            _, created = r.request("daily", key)
            assert not created
        r.drive(lambda: r.status("daily", "2026-10-04") == "SUCCESS")
        assert spans(r) == [("2026-10-01", "2026-10-04"), ("2026-10-04", "2026-10-05")]


def test_a_block_waits_for_its_backfill_to_settle(db_url):
    with rig([packed(max_windows=31, settle_seconds=60)], database_url=db_url) as r:
        for key in keys("2026-10-01", 5):
            r.request("daily", key)
        now = now_utc()
        report = submit_queued(r.store, r.client, r.config, now=now, report=PassReport())
        assert report.submitted == 0 and report.deferred >= 1 and r.sim.executions() == []
        submit_queued(r.store, r.client, r.config, now=now + timedelta(seconds=61))
        assert spans(r) == [("2026-10-01", "2026-10-06")]


def test_a_full_block_does_not_wait(db_url):
    with rig([packed(max_windows=3, settle_seconds=600)], database_url=db_url) as r:
        for key in keys("2026-10-01", 4):
            r.request("daily", key)
        submit_queued(r.store, r.client, r.config)
        assert spans(r) == [("2026-10-01", "2026-10-04")]  # the full pack goes; the lone 10-04 waits


def test_a_lost_create_of_a_pack_is_found_by_listing(db_url):
    with rig([packed()], database_url=db_url) as r:
        r.sim.add_fault(Fault(kind="lost_create_response", endpoint="create", times=1))
        for key in keys("2026-10-01", 7):
            r.request("daily", key)
        r.drive(lambda: all(r.status("daily", k) == "SUCCESS" for k in keys("2026-10-01", 7)))
        assert spans(r) == [("2026-10-01", "2026-10-08")]
        assert r.sim.stats()["create"] == 1


def test_cancelling_one_window_cancels_its_pack(db_url):
    with rig([packed()], database_url=db_url, scenarios={"daily": Scenario(kind="stuck_running")}) as r:
        for key in keys("2026-10-01", 3):
            r.request("daily", key)
        r.drive(lambda: all(r.status("daily", k) == "RUNNING" for k in keys("2026-10-01", 3)))
        targets, _ = cancel_targets(r.store, r.config, workflow="daily", partition_keys=["2026-10-02"],
                                    execution_ids=[])
        changes, _ = cancel_executions(r.store, r.client, r.config, targets, reason="test", now=now_utc())
        assert [r.status("daily", k) for k in keys("2026-10-01", 3)] == ["CANCELLED"] * 3
        assert {c.partition_key for c in changes for c in (c, *c.members)} == set(keys("2026-10-01", 3))
        [execution] = r.sim.executions()
        assert execution["status"] == "CANCELLED"


def test_a_forced_rerun_takes_one_window_out_of_its_running_pack(db_url):
    window_keys = keys("2026-10-01", 3)
    with rig([packed()], database_url=db_url, scenarios={"daily": Scenario(kind="stuck_running")}) as r:
        for key in window_keys:
            r.request("daily", key)
        r.drive(lambda: all(r.status("daily", k) == "RUNNING" for k in window_keys))
        workflow = r.config.workflow("daily")
        outcome = request_window(r.store, workflow, r.config.instance(workflow.instance_id),
                                 window_for(workflow, "2026-10-02"), client=lambda: r.client, force_new=True)
        [change] = outcome.changes
        assert (change.partition_key, change.to_status) == ("2026-10-02", "CANCELLED")
        assert r.status("daily", "2026-10-02") == "QUEUED"  # its own new execution, queued
        assert [r.status("daily", k) for k in ("2026-10-01", "2026-10-03")] == ["RUNNING", "RUNNING"]
        [execution] = r.sim.executions()
        assert execution["status"] == "RUNNING"  # the pack keeps running for the others
