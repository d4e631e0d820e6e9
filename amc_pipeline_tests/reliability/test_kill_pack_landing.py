"""kill -9 in the middle of a pack's landing: every partition is whole, the old version or the new one.

A pack of ten windows has landed (version 1). The windows are re-run (forced), packed again into one
execution with a large result (version 2), and a child process lands that pack; the test SIGKILLs it
once some windows show version 2 and others still version 1. Each partition must then be exactly one
of the two versions, readable, with no partial file; the landing sensor's next try (here, directly)
lands version 2 everywhere.
"""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from amc_pipeline.monitor.pack_landing import land_pack
from amc_pipeline.partitions import window_for
from amc_pipeline.results.layout import partition_dir
from amc_pipeline.simulator import Scenario
from amc_pipeline_tests.harness import rig
from amc_pipeline_tests.reliability.common import sigkill_when, unreadable_parts

CHILD = "amc_pipeline_tests.reliability.land_pack_child"
PROJECT = Path(__file__).resolve().parents[2]
WORKFLOW = {"name": "packed", "sql": "SELECT date, SUM(impressions) FROM t GROUP BY 1",
            "packing": {"max_windows": 31, "split_column": "date", "settle_seconds": 0}}
KEYS = [f"2026-10-{d:02d}" for d in range(1, 11)]


def version(data_dir: Path, key: str) -> tuple[int, int]:
    """(rows, inode of the partition folder): the folder is swapped whole, so its inode names the version."""
    folder = partition_dir(data_dir, "packed", key)
    return pq.read_table(folder).num_rows, folder.stat().st_ino


def leader_of(r, key: str) -> int:
    attempt = r.store.get_live("packed", key).attempt
    return attempt.pack_leader_id


def test_sigkill_mid_pack_landing_leaves_every_partition_whole(tmp_path):
    data_dir = tmp_path / "data"
    db = f"sqlite:///{tmp_path / 's.db'}"
    scenarios = {"packed": Scenario(rows=1_000, files=1)}
    with rig([WORKFLOW], database_url=db, scenarios=scenarios) as r:
        workflow = r.config.workflow("packed")
        instance = r.config.instance(workflow.instance_id)
        for key in KEYS:
            r.request("packed", key)
        r.drive(lambda: all(r.status("packed", k) == "SUCCESS" for k in KEYS))
        land_pack(r.store, r.client, instance, workflow, leader_of(r, KEYS[0]), r.config.monitor, data_dir=data_dir)
        old = {k: version(data_dir, k) for k in KEYS}
        assert sum(rows for rows, _ in old.values()) == 1_000

        r.sim.set_scenario("packed", Scenario(rows=600_000, files=2))
        for key in KEYS:  # a forced re-run of each window: packed again into one new execution
            window = window_for(workflow, key)
            r.store.enqueue_forced(workflow="packed", instance_id=workflow.instance_id, partition_key=key,
                                   window_start=window.start_utc, window_end=window.end_utc)
        r.drive(lambda: all(r.status("packed", k) == "SUCCESS" for k in KEYS))
        assert len(r.sim.executions()) == 2
        leader = leader_of(r, KEYS[0])

        child = subprocess.Popen(
            [sys.executable, "-m", CHILD, r.sim.url, r.sim.token_url, str(data_dir), db, json.dumps(WORKFLOW),
             str(leader)],
            cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )

        def mid_pack() -> bool:
            swapped = [k for k in KEYS if partition_dir(data_dir, "packed", k).stat().st_ino != old[k][1]]
            return 0 < len(swapped) < len(KEYS)

        sigkill_when(child, mid_pack, timeout=120, poll=0.005)

        assert unreadable_parts(data_dir) == []
        states = {k: version(data_dir, k) for k in KEYS}
        new = [k for k in KEYS if states[k] != old[k]]
        assert 0 < len(new) < len(KEYS)  # killed with some windows of the pack landed and some not
        for key in KEYS:
            rows, inode = states[key]
            if key in new:
                assert rows == 60_000 and inode != old[key][1]  # the new version, whole
            else:
                assert (rows, inode) == old[key]  # the previous version, untouched

        # The next try lands what is left; every window then holds exactly its share of the new result.
        again = land_pack(r.store, r.client, instance, workflow, leader, r.config.monitor, data_dir=data_dir)
        assert {e.partition_key for e, _ in again.windows} <= set(KEYS)
        assert all(version(data_dir, k)[0] == 60_000 for k in KEYS)
        assert pq.read_table(data_dir / "results" / "packed", partitioning="hive").num_rows == 600_000
        print(f"\nkill -9 during a pack landing: {len(new)} of {len(KEYS)} partitions had the new version, "
              f"{len(KEYS) - len(new)} the old one, 0 partial; the next try landed "
              f"{len(again.windows)} window(s) not yet recorded as landed")
