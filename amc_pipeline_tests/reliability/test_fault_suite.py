"""A 30-day backfill of one daily workflow with every simulator fault injected at about 20 %.

What it proves (DESIGN.md "Lifecycle", "Land"): whatever AMC and S3 throw at us — throttling with
Retry-After, 500s, gateway timeouts, slow answers, dropped connections, create responses lost after the
execution was created, truncated downloads, expired URLs, a revoked token — every partition lands exactly
once with every row the simulator served, no window gets a second AMC execution, and no reader ever sees
a partial file. Landing runs go through Dagster (`dagster.materialize` of the partition, as the landing
sensor's run would) and are retried after failure the way the landing sensor does.
"""

import time
from collections import Counter
from datetime import date, timedelta

import dagster as dg
import pytest

from amc_pipeline.amc.simulator import Fault, Scenario
from amc_pipeline.definitions import build_definitions
from amc_pipeline_tests.harness import rig
from amc_pipeline_tests.reliability.common import (
    executions_by_window,
    leftovers,
    materialize,
    served_rows,
    unreadable_parts,
)

WORKFLOW = "daily_sales"
START = date(2026, 9, 1)
KEYS = [(START + timedelta(days=i)).isoformat() for i in range(30)]
PROBABILITY = 0.2
SEED = 20261129
FAULT_KINDS = ("throttle", "error500", "timeout504", "slow", "drop", "lost_create_response",
               "truncate_download", "expire_url")
#: Bounds on the loop (not timing assertions): passes and landing attempts per partition.
MAX_ROUNDS = 400
MAX_LANDING_ATTEMPTS = 25


def count_faults(sim) -> Counter:
    """Count each fault the simulator actually injects (its stats count requests, not faults)."""
    injected: Counter = Counter()
    state = sim.state
    take = state.take_fault

    def counting(endpoint):
        fault = take(endpoint)
        if fault is not None:
            injected[fault.kind] += 1
        return fault

    state.take_fault = counting
    return injected


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AMC_PIPELINE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def test_backfill_under_every_fault(data_dir, tmp_path):
    started = time.monotonic()
    faults = [Fault(kind=kind, probability=PROBABILITY, retry_after=1,
                    delay_seconds=0.2 if kind == "slow" else 0.0) for kind in FAULT_KINDS]
    workflow = {"name": WORKFLOW, "sql": "SELECT day, SUM(sales) FROM t GROUP BY 1",
                "start_date": START.isoformat()}
    with rig([workflow], database_url=f"sqlite:///{tmp_path / 'store.db'}",
             scenarios={WORKFLOW: Scenario(kind="succeed", files=2)},
             monitor={"max_landing_attempts": MAX_LANDING_ATTEMPTS, "concurrency": 10},
             instance={"max_active_executions": 100, "daily_execution_quota": 1000},
             daily_quota=1000, seed=SEED) as r:
        injected = count_faults(r.sim)
        defs = build_definitions(r.config)
        with dg.instance_for_test() as instance:
            # The backfill: the first partitions through Dagster (which enqueues), the rest by the store.
            for key in KEYS[:3]:
                assert materialize(r, defs, WORKFLOW, key, instance).success
            for key in KEYS[3:]:
                r.request(WORKFLOW, key)
            assert len(r.store.list_executions(workflow=WORKFLOW)) == 30
            for fault in faults:
                r.sim.add_fault(fault)

            landed_runs: Counter = Counter()
            failed_runs: Counter = Counter()
            revoked = 0
            for rounds in range(MAX_ROUNDS):
                if rounds in (2, 12):  # a revoked token at some point (twice)
                    r.sim.add_fault(Fault(kind="revoke_token", times=1))
                    revoked += 1
                r.monitor_pass()
                for execution in r.store.landable(r_now(), limit=100):
                    assert execution.land_attempts < MAX_LANDING_ATTEMPTS, (
                        f"{execution.partition_key}: landing gave up: {execution.land_error}")
                    result = materialize(r, defs, WORKFLOW, execution.partition_key, instance)
                    if result.success and result.get_asset_materialization_events():
                        landed_runs[execution.partition_key] += 1
                    else:
                        failed_runs[execution.partition_key] += 1
                if all(r.store.get_live(WORKFLOW, k).landed_at for k in KEYS):
                    break
                time.sleep(0.05)
            else:
                pytest.fail(f"not all landed after {MAX_ROUNDS} rounds: "
                            f"{[k for k in KEYS if not r.store.get_live(WORKFLOW, k).landed_at]}")
            r.sim.clear_faults()

            # Exactly one successful materialization per partition, in Dagster's own records.
            events = instance.fetch_materializations(dg.AssetKey(["amc", WORKFLOW]), limit=1000).records
            per_partition = Counter(e.partition_key for e in events)
            assert per_partition == {k: 1 for k in KEYS}
            assert landed_runs == {k: 1 for k in KEYS}

            # Rows equal what the simulator served, for each partition's execution.
            for event in events:
                execution = r.store.get_live(WORKFLOW, event.partition_key)
                meta = event.asset_materialization.metadata
                expected = served_rows(r.sim, execution.attempt.amc_execution_id)
                assert meta["dagster/row_count"].value == expected == execution.rows
                assert meta["amc/execution_id"].value == execution.attempt.amc_execution_id

            # No duplicate AMC execution per window; every AMC execution is one of our attempts.
            ours = {a.amc_execution_id: a for k in KEYS
                    for a in r.store.attempts_for(r.store.get_live(WORKFLOW, k).id)}
            groups = executions_by_window(r.sim)
            assert set(groups) == {(WORKFLOW, k) for k in KEYS}
            duplicates = 0
            for (_, key), records in groups.items():
                assert all(rec["workflowExecutionId"] in ours for rec in records), key
                failed = [rec for rec in records if rec["status"] != "SUCCEEDED"]
                duplicates += len(records) - 1 - len(failed)
            assert duplicates == 0

            # Nothing partial or staged visible; every part readable.
            partial = leftovers(data_dir) + unreadable_parts(data_dir)
            assert partial == []
            assert sorted(p.name for p in (data_dir / "results" / WORKFLOW).iterdir()) == [
                f"window_start={k}" for k in KEYS]

    requests = r.sim.stats() if False else None  # noqa: F841 - the server is stopped here
    print(
        "\nfault suite figures:"
        f"\n  faults injected by kind: {dict(sorted(injected.items()))} (total {sum(injected.values())},"
        f" revoke_token scheduled {revoked}x)"
        f"\n  partitions landed: {len(per_partition)}/{len(KEYS)}; landing runs failed and retried: "
        f"{sum(failed_runs.values())}; monitor rounds: {rounds + 1}"
        f"\n  duplicate AMC executions: {duplicates}; partial or staging files: {len(partial)}"
        f"\n  elapsed: {time.monotonic() - started:.1f}s"
    )


def r_now():
    from datetime import UTC, datetime

    return datetime.now(UTC)
