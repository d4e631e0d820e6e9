"""Many advertisers: two accounts, five instances, workflows fanned out over them, through the project's
own Definitions on a real Dagster instance against the simulator over HTTP.

What is proven here: a backfill over every instance lands each (instance, window) exactly once into one
dataset; a revoked refresh token stops only its own account's instances, visibly; the account's
parallel limit holds (measured at the simulator, where AMC would measure it); a daily window of a
second workflow is not starved by a long backfill; landing runs respect their limits.
"""

from __future__ import annotations

import csv
import io
import time
from collections import Counter
from datetime import date, timedelta

import dagster as dg
import pyarrow.dataset as ds
import pytest
from dagster._core.test_utils import create_run_for_test

from amc_pipeline.definitions import build_definitions
from amc_pipeline.health.status import monitor_health
from amc_pipeline.partitions import partitions_def
from amc_pipeline.store.states import PENDING, QUEUED, SUCCESS
from amc_pipeline_tests.accounts.agency import ACCOUNTS, ACME, ALL_INSTANCES, Agency, agency, secrets

REACH = {"name": "reach", "instances": "all"}
SPEND = {"name": "spend", "instances": {"tags": {"brand": "acme"}}}
DAYS = ["2026-10-03", "2026-10-04", "2026-10-05"]


def keys_of(a: Agency, workflow: str, days: list[str]) -> list[str]:
    """What a backfill of `days` across every instance of the workflow selects in the UI."""
    pdef = partitions_def(a.config.workflow(workflow))
    return [str(k) for k in pdef.get_partition_keys() if k.keys_by_dimension["date"] in days]


def sensor_requests(defs: dg.Definitions, instance: dg.DagsterInstance, a: Agency, name: str) -> list[dg.RunRequest]:
    sensor = defs.resolve_sensor_def(name)
    context = dg.build_sensor_context(instance=instance, repository_def=defs.get_repository_def(),
                                      resources={"amc_store": a.resources()["amc_store"]})
    result = sensor.evaluate_tick(context)
    return list(result.run_requests or [])


def monitor_run(defs: dg.Definitions, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def("amc_monitor").execute_in_process(instance=instance, raise_on_error=False)


def land_requested(defs: dg.Definitions, instance: dg.DagsterInstance, a: Agency) -> int:
    """Run what the landing sensor asks for (as the daemon would); returns how many runs it asked."""
    requests = sensor_requests(defs, instance, a, "amc_landing_sensor")
    for request in requests:
        job = defs.resolve_job_def(request.job_name)
        result = job.execute_in_process(instance=instance, partition_key=request.partition_key, tags=request.tags,
                                        raise_on_error=False)
        assert result.success, request
    return len(requests)


def materialized_partitions(instance: dg.DagsterInstance, workflow: str) -> Counter[str]:
    records = instance.fetch_materializations(dg.AssetKey(["amc", workflow]), limit=1000).records
    return Counter(r.asset_materialization.partition for r in records)


def test_fan_out_backfill_lands_every_instance_window_once(tmp_path, monkeypatch):
    with agency(monkeypatch, tmp_path, [REACH, SPEND]) as a:
        defs = build_definitions(a.config)
        wanted = {"reach": keys_of(a, "reach", DAYS), "spend": keys_of(a, "spend", DAYS)}
        assert len(wanted["reach"]) == 15 and len(wanted["spend"]) == 6
        assert {k.split("|")[1] for k in wanted["spend"]} == ACME
        with dg.instance_for_test() as instance:
            # The backfill: one run per partition (BackfillPolicy.multi_run(1)), each only enqueues.
            for workflow, keys in wanted.items():
                job = defs.resolve_job_def(f"amc_{workflow}_job")
                for key in keys:
                    assert job.execute_in_process(instance=instance, partition_key=key).success
            assert all(a.status(w, k) == QUEUED for w, keys in wanted.items() for k in keys)

            before = a.sim.stats()
            first = monitor_run(defs, instance)
            assert first.success
            # Both accounts were used in the run, each with one token.
            assert a.sim.stats()["token"] - before.get("token", 0) == 2

            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                landed = {w: materialized_partitions(instance, w) for w in wanted}
                if all(set(landed[w]) >= set(keys) for w, keys in wanted.items()):
                    break
                assert monitor_run(defs, instance).success
                land_requested(defs, instance, a)
                time.sleep(0.1)
            else:
                raise AssertionError(f"not every window landed: {landed}")

            for workflow, keys in wanted.items():
                counts = materialized_partitions(instance, workflow)
                assert {k: counts[k] for k in keys} == dict.fromkeys(keys, 1), workflow  # each exactly once
                for key in keys:
                    execution = a.store.get_live(workflow, key)
                    assert execution.landed and execution.attempt.attempt == 1
                    assert execution.instance_id == key.split("|")[1]
            # AMC ran each (instance, window) once: 21 executions, on the instances their keys name.
            amc = a.sim.executions()
            assert len(amc) == 21
            per_instance = Counter(e["instance"] for e in a.sim._state().executions.values())
            assert per_instance == Counter({i: 3 + (3 if i in ACME else 0) for i in ALL_INSTANCES})

            # One dataset per workflow: every advertiser's rows, the instance as a hive column.
            table = ds.dataset(tmp_path / "data" / "results" / "reach", format="parquet",
                               partitioning="hive").to_table()
            assert sorted(set(table.column("instance_id").to_pylist())) == sorted(ALL_INSTANCES)
            assert sorted(set(table.column("window_start").to_pylist())) == DAYS
            stored_rows = sum(a.store.get_live("reach", k).rows for k in wanted["reach"])
            assert table.num_rows == stored_rows > 0

            # Each partition's own metadata: its row count and its AMC execution.
            event = instance.fetch_materializations(dg.AssetKey(["amc", "reach"]), limit=1).records[0]
            meta = event.asset_materialization.metadata
            key = event.asset_materialization.partition
            assert meta["dagster/row_count"].value == a.store.get_live("reach", key).rows
            assert meta["amc/execution_id"].value == a.store.get_live("reach", key).attempt.amc_execution_id


def test_revoked_refresh_token_stops_only_its_accounts_instances(tmp_path, monkeypatch):
    with agency(monkeypatch, tmp_path, [REACH]) as a:
        defs = build_definitions(a.config)
        keys = keys_of(a, "reach", ["2026-10-05"])
        for key in keys:
            a.request("reach", key)
        a.sim.revoke_account(a.client_id("agency_b"))
        with dg.instance_for_test() as instance:
            before = a.sim.stats()
            result = monitor_run(defs, instance)
            # Visibly: the run fails, naming the account and its instances...
            assert not result.success
            [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
            message = failure.step_failure_data.user_failure_data.description
            assert "account agency_b (instances amcbbb001, amcbbb002)" in message and "agency_a" not in message
            assert not any(secret in message for secret in secrets())
            # ...after serving the other account: one token each (the refusal is not asked twice).
            assert a.sim.stats()["token"] - before.get("token", 0) == 2
            by_instance = {k.split("|")[1]: a.store.get_live("reach", k) for k in keys}
            for iid in ACCOUNTS["agency_a"]["instances"]:
                assert by_instance[iid].attempt.status != QUEUED
            for iid in ACCOUNTS["agency_b"]["instances"]:
                waiting = by_instance[iid].attempt
                assert waiting.status == QUEUED and waiting.error_type == "AUTHENTICATION"
                assert "refresh_token" in waiting.last_error
            health = monitor_health(a.store, a.config)
            assert any(p.startswith("account agency_b:") for p in health.problems), health.problems

            # The other account carries on: its windows finish and land while agency_b stays refused.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and sum(materialized_partitions(instance, "reach").values()) < 3:
                assert not monitor_run(defs, instance).success  # still failing visibly
                land_requested(defs, instance, a)
                time.sleep(0.1)
            landed = materialized_partitions(instance, "reach")
            assert {k.split("|")[1] for k in landed} == set(ACCOUNTS["agency_a"]["instances"])
            assert all(by_instance[i].attempt.status == QUEUED for i in ACCOUNTS["agency_b"]["instances"])
            assert len(a.sim.executions()) == 3  # nothing was created for agency_b


def test_account_limit_holds_under_a_60_window_backfill(tmp_path, monkeypatch):
    bulk = {"name": "bulk", "instances": list(ACCOUNTS["agency_a"]["instances"])}
    days = [(date(2026, 10, 1) + timedelta(days=i)).isoformat() for i in range(20)]
    with agency(monkeypatch, tmp_path, [bulk], account_limits={"agency_a": 4}) as a:
        defs = build_definitions(a.config)
        keys = keys_of(a, "bulk", days)
        assert len(keys) == 60
        for key in keys:
            a.request("bulk", key)
        ids = list(ACCOUNTS["agency_a"]["instances"])
        peak_in_store = 0
        with dg.instance_for_test() as instance:
            deadline = time.monotonic() + 150
            while time.monotonic() < deadline and not all(a.status("bulk", k) == SUCCESS for k in keys):
                assert monitor_run(defs, instance).success
                peak_in_store = max(peak_in_store, sum(a.store.active_counts(ids).values()))
            assert all(a.status("bulk", k) == SUCCESS for k in keys)
        account = a.sim.accounts()[a.client_id("agency_a")]
        # Measured by AMC's stand-in at every create: never more than 4 running across the 3 instances,
        # and never a create refused for the limit (we did not even ask past it).
        assert 1 < account["peak_active"] <= 4, account
        assert account["refused_creates"] == 0
        assert peak_in_store <= 4
        assert len(a.sim.executions()) == 60


def test_daily_window_is_not_starved_by_a_long_backfill(tmp_path, monkeypatch):
    one = ["amcaaa001"]
    with agency(monkeypatch, tmp_path, [{"name": "history", "instances": one}, {"name": "daily", "instances": one}],
                **{"pending_seconds": 30, "running_seconds": 30}) as a:
        defs = build_definitions(a.config)
        backfill = [f"{(date(2026, 10, 1) + timedelta(days=i)).isoformat()}|amcaaa001" for i in range(30)]
        for key in backfill:
            a.request("history", key)
        a.request("daily", "2026-11-20|amcaaa001")  # requested after all 30
        with dg.instance_for_test() as instance:
            assert monitor_run(defs, instance).success
        # The simulator's own record of creates, in the order they arrived (its workflow key per create).
        order = [e["key"] for e in sorted(a.sim._state().executions.values(), key=lambda e: e["seq"])]
        assert len(order) == 10  # the instance's 10 slots
        # Round-robin by oldest request: history's oldest, then daily's, then the rest of history.
        assert order.index("daily") < 10 and order[:2] == ["history", "daily"]
        assert a.status("daily", "2026-11-20|amcaaa001") == PENDING
        assert sum(a.status("history", k) == PENDING for k in backfill) == 9


@pytest.mark.parametrize("limits", [{"max_landings_per_instance": 2, "max_concurrent_landings": 3}])
def test_landing_runs_are_limited_per_instance_and_overall(tmp_path, monkeypatch, limits):
    with agency(monkeypatch, tmp_path, [REACH], monitor=limits) as a:
        defs = build_definitions(a.config)
        keys = [k for k in keys_of(a, "reach", DAYS) if k.split("|")[1] in ("amcaaa001", "amcaaa002")]
        for key in keys:
            a.request("reach", key)
        with dg.instance_for_test() as instance:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not all(a.status("reach", k) == SUCCESS for k in keys):
                assert monitor_run(defs, instance).success
            # One landing already in flight on amcaaa001.
            create_run_for_test(instance, job_name="amc_reach_job", status=dg.DagsterRunStatus.STARTED,
                                tags={"amc/landing": "true", "amc/instance": "amcaaa001"})
            requests = sensor_requests(defs, instance, a, "amc_landing_sensor")
            per_instance = Counter(r.tags["amc/instance"] for r in requests)
            assert sum(per_instance.values()) == 2  # 3 overall, one taken
            assert per_instance["amcaaa001"] <= 1  # 2 per instance, one taken


def test_packed_backfill_across_instances_packs_per_instance(tmp_path, monkeypatch):
    """Packing and fan-out together: a pack is one instance's contiguous windows, so 5 days on 2
    instances (one in each account) are 2 AMC executions, landed as 10 partitions by 2 landing runs."""
    two = ["amcaaa001", "amcbbb001"]
    daily = {"name": "daily", "instances": two, "sql": "SELECT date, campaign, SUM(impressions) FROM t GROUP BY 1, 2",
             "packing": {"max_windows": 31, "split_column": "date", "settle_seconds": 0}}
    days = [(date(2026, 10, 1) + timedelta(days=i)).isoformat() for i in range(5)]
    with agency(monkeypatch, tmp_path, [daily]) as a:
        defs = build_definitions(a.config)
        keys = keys_of(a, "daily", days)
        assert len(keys) == 10
        with dg.instance_for_test() as instance:
            job = defs.resolve_job_def("amc_daily_job")
            for key in keys:  # the backfill's runs: each queues its window
                assert job.execute_in_process(instance=instance, partition_key=key).success
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not all(a.status("daily", k) == SUCCESS for k in keys):
                assert monitor_run(defs, instance).success
            assert all(a.status("daily", k) == SUCCESS for k in keys)
            executions = a.sim.executions()
            assert len(executions) == 2  # one pack per instance
            runs = 0
            while (asked := land_requested(defs, instance, a)) and runs < 10:
                runs += asked
            assert runs == 2  # one landing run per pack
            counts = materialized_partitions(instance, "daily")
            assert {k: counts[k] for k in keys} == dict.fromkeys(keys, 1)
            landed = {k: a.store.get_live("daily", k).rows for k in keys}
            served = sum(len(list(csv.DictReader(io.StringIO(blob.decode("utf-8"), newline=""))))
                         for e in executions for blob in a.sim.served_files(e["workflowExecutionId"]))
            assert sum(landed.values()) == served > 0  # every row AMC served, each in its own window


def test_sync_keeps_a_fanned_out_saved_workflow_on_every_instance(tmp_path, monkeypatch):
    """`amc-pipeline sync`'s plan and apply, with the command line's per-account clients: the saved
    workflow is created in each of the five instances with its own account's token (the simulator
    refuses a token of the other account), then reported unchanged."""
    from amc_pipeline.config import Settings
    from amc_pipeline.credentials import env_clients
    from amc_pipeline.sync import apply, plan

    saved = {"name": "saved_reach", "instances": "all", "saved_workflow": True}
    with agency(monkeypatch, tmp_path, [saved]) as a, env_clients(a.config, Settings.from_env()) as client:
        first = plan(client, a.config)
        assert sorted((i.instance_id, i.action) for i in first) == [(i, "create") for i in sorted(ALL_INSTANCES)]
        apply(client, a.config, first)
        state = a.sim._state()
        assert {i for i in ALL_INSTANCES if "saved_reach" in state.workflows.get(i, {})} == set(ALL_INSTANCES)
        assert {i.action for i in plan(client, a.config)} == {"unchanged"}


def test_external_execution_on_a_fanned_out_instance_is_adopted_into_its_partition(tmp_path, monkeypatch):
    """Someone runs the saved workflow in agency_b's console for a window the pipeline has queued: the
    monitor adopts it into that instance's partition (not the other instance's) and creates nothing."""
    from amc_pipeline.amc.client import AmcClient, AmcCredentials
    from amc_pipeline.config import Settings
    from amc_pipeline.credentials import env_clients
    from amc_pipeline.store.states import ORIGIN_EXTERNAL
    from amc_pipeline.sync import apply, plan

    two = ["amcaaa001", "amcbbb001"]
    saved = {"name": "reach", "instances": two, "saved_workflow": True, "adopt_external": True}
    key, other = "2026-10-05|amcbbb001", "2026-10-05|amcaaa001"
    with agency(monkeypatch, tmp_path, [saved]) as a:
        with env_clients(a.config, Settings.from_env()) as client:
            apply(client, a.config, plan(client, a.config))
        defs = build_definitions(a.config)
        with dg.instance_for_test() as instance:
            assert defs.resolve_job_def("amc_reach_job").execute_in_process(instance=instance,
                                                                             partition_key=key).success
            b_id, b_secret, b_refresh = ACCOUNTS["agency_b"]["credentials"]
            with AmcClient(a.sim.url, AmcCredentials(b_id, b_secret, b_refresh, a.sim.token_url)) as b_client:
                theirs = b_client.create_execution(a.config.instance("amcbbb001"), {
                    "workflowId": "reach", "timeWindowType": "EXPLICIT", "timeWindowStart": "2026-10-05T00:00:00",
                    "timeWindowEnd": "2026-10-06T00:00:00", "timeWindowTimeZone": "UTC"}).execution_id
            assert monitor_run(defs, instance).success
            live = a.store.get_live("reach", key)
            assert (live.attempt.amc_execution_id, live.attempt.origin) == (theirs, ORIGIN_EXTERNAL)
            assert a.store.get_live("reach", other) is None  # the other instance's window is untouched
            assert len(a.sim.executions()) == 1  # only theirs: the queued window was not created again
