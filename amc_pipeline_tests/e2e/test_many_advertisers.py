"""Many advertisers through the UI's own API: two accounts, five instances, one workflow fanned out
over all five and one over two, each backfilled over a date range across its instances in one
GraphQL `launchPartitionBackfill` (what the backfill dialog sends), with the real daemon doing the rest.
"""

from collections import Counter

import pyarrow.dataset as ds
import pytest

from amc_pipeline_tests.accounts.agency import ACCOUNTS, ACME, ALL_INSTANCES
from amc_pipeline_tests.e2e.conftest import running_stack
from amc_pipeline_tests.e2e.flow import REPORT, launch_backfill, materializations, metadata, partition_keys
from amc_pipeline_tests.e2e.stack import wait_until

pytestmark = pytest.mark.e2e

SQL = "SELECT campaign, SUM(impressions) AS impressions FROM sponsored_ads_traffic GROUP BY 1"


def _setup() -> tuple[list, list, dict, dict]:
    accounts, instances = [], []
    for name, spec in ACCOUNTS.items():
        accounts.append(dict(zip(("client_id_env", "client_secret_env", "refresh_token_env"), spec["env"],
                                 strict=True), name=name))
        for iid, (adv, mkt) in spec["instances"].items():
            instances.append({"instance_id": iid, "advertiser_id": adv, "marketplace_id": mkt, "account": name,
                              "tags": {"brand": "acme" if iid in ACME else "other"}})
    a, b = ACCOUNTS["agency_a"], ACCOUNTS["agency_b"]
    sim = {"client_id": a["credentials"][0], "client_secret": a["credentials"][1], "refresh_token": a["credentials"][2],
           "instances": {k: list(v) for k, v in a["instances"].items()},
           "accounts": [{"client_id": b["credentials"][0], "client_secret": b["credentials"][1],
                         "refresh_token": b["credentials"][2],
                         "instances": {k: list(v) for k, v in b["instances"].items()}}],
           "pending_seconds": 2, "running_seconds": 3}
    env = {name: value for spec in ACCOUNTS.values()
           for name, value in zip(spec["env"], spec["credentials"], strict=True)}
    return accounts, instances, sim, env


def test_a_backfill_across_all_instances_lands_each_instance_window_once(request, tmp_path):
    accounts, instances, sim, env = _setup()
    workflows = [{"name": "reach", "instances": "all", "sql": SQL, "start_date": "2026-10-01"},
                 {"name": "spend", "instances": {"tags": {"brand": "acme"}}, "sql": SQL, "start_date": "2026-10-01"}]
    with running_stack(request, tmp_path, daemon=False, workflows=workflows, sim_config=sim, accounts=accounts,
                       instances=instances, extra_env=env) as stack:
        wanted = {}
        for workflow in ("reach", "spend"):
            keys = partition_keys(stack, workflow)
            days = sorted({k.split("|")[0] for k in keys})[-2:]  # the newest two days, every instance
            wanted[workflow] = [k for k in keys if k.split("|")[0] in days]
            launch_backfill(stack, [workflow], wanted[workflow])  # one action per workflow
        assert len(wanted["reach"]) == 10 and len(wanted["spend"]) == 4
        stack.start_daemon()

        def landed() -> dict[str, list]:
            found = {w: materializations(stack, w, keys) for w, keys in wanted.items()}
            done = all({m["partition"] for m in found[w]} == set(keys) for w, keys in wanted.items())
            return found if done else {}

        mats = wait_until("every (instance, window) to land", landed, timeout=300, interval=2,
                          on_timeout=stack.dump_logs)
        for workflow, keys in wanted.items():
            assert Counter(m["partition"] for m in mats[workflow]) == dict.fromkeys(keys, 1)  # once each
            for event in mats[workflow]:
                meta = metadata(event)
                assert int(meta["dagster/row_count"]) >= 0 and meta["amc/execution_id"]
        # AMC ran each (instance, window) once, on the instance its key names.
        executions = stack.sim_get("/_simulator/executions")
        assert len(executions) == 14
        assert len({e["workflowExecutionId"] for e in executions}) == 14
        accounts_seen = stack.sim_get("/_simulator/accounts")
        assert {c: a["peak_active"] > 0 for c, a in accounts_seen.items()} == {
            spec["credentials"][0]: True for spec in ACCOUNTS.values()}
        table = ds.dataset(stack.data_dir / "results" / "reach", format="parquet", partitioning="hive").to_table()
        assert sorted(set(table.column("instance_id").to_pylist())) == sorted(ALL_INSTANCES)
        REPORT.append(f"many advertisers: 2 backfill actions -> {len(executions)} AMC executions, "
                      f"{sum(len(v) for v in wanted.values())} partitions landed once each over "
                      f"{len(ALL_INSTANCES)} instances in 2 accounts")
