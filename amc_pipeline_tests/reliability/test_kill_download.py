"""kill -9 in the middle of a download: nothing partial is visible, and the next attempt lands.

A child process lands a large result (200 000 rows) that arrives slowly (a throttling TCP proxy in
front of the simulator; the simulator signs download URLs for the host the request came to, so the
downloads go through the proxy too). The test SIGKILLs it once part of the file is on disk, then checks
that the partition still holds the previous version byte for byte, and that a new landing in this
process replaces it with exactly what the simulator served and cleans the dead landing's staging dir.
"""

import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from amc_pipeline.amc.client import AmcClient, execution_body
from amc_pipeline.config import InstanceConfig
from amc_pipeline.results.landing import land_execution
from amc_pipeline.results.layout import partition_dir
from amc_pipeline.simulator import Scenario, SimulatorServer
from amc_pipeline_tests import constants
from amc_pipeline_tests.harness import FAST_RETRY, credentials, sim_config
from amc_pipeline_tests.reliability.common import leftovers, served_rows, sigkill_when, unreadable_parts
from amc_pipeline_tests.reliability.proxy import TcpProxy

INSTANCE = InstanceConfig(**constants.INSTANCE)
#: Run with -m from the project root, so the child imports the test package like the tests do.
CHILD = "amc_pipeline_tests.reliability.land_child"
PROJECT = Path(__file__).resolve().parents[2]


def run_to_success(sim, client, key: str) -> tuple[str, list[dict]]:
    body = execution_body(workflow_id=f"{key}-{uuid.uuid4().hex[:8]}", sql="SELECT 1",
                          window_start=datetime(2026, 9, 1, tzinfo=UTC), window_end=datetime(2026, 9, 2, tzinfo=UTC),
                          time_zone="UTC", timeout_seconds=3600)
    execution = client.create_execution(INSTANCE, body)
    for _ in range(400):  # a bound on polling, not a timing assertion
        execution = client.get_execution(INSTANCE, execution.execution_id)
        if execution.status == "SUCCEEDED":
            return execution.execution_id, [{"name": c.name, "dataType": c.data_type}
                                            for c in execution.output_columns]
        time.sleep(0.05)
    raise AssertionError("execution never SUCCEEDED")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_sigkill_mid_download_leaves_previous_version_and_next_attempt_lands(tmp_path):
    data_dir = tmp_path / "data"
    scenarios = {"old": Scenario(rows=500, files=1), "big": Scenario(rows=200_000, files=2)}
    with SimulatorServer(sim_config(scenarios=scenarios)) as sim, \
            AmcClient(sim.url, credentials(sim), retry=FAST_RETRY) as client, \
            TcpProxy("127.0.0.1", sim.port, bytes_per_second=2_000_000) as proxy:
        # The partition's previous version: a small result landed earlier.
        old_id, old_columns = run_to_success(sim, client, "old")
        land_execution(client, INSTANCE, old_id, old_columns, data_dir=data_dir, workflow="wf", partition_key="k")
        target = partition_dir(data_dir, "wf", "k")
        before = snapshot(target)

        big_id, big_columns = run_to_success(sim, client, "big")
        size = sum(len(b) for b in sim.served_files(big_id))
        proxy_url = f"http://127.0.0.1:{proxy.port}"
        child = subprocess.Popen(
            [sys.executable, "-m", CHILD, proxy_url, proxy_url + "/auth/o2/token", str(data_dir), "wf", "k",
             big_id, json.dumps(big_columns)],
            cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        progress = {"downloaded": 0}

        def mid_download() -> bool:
            parts = list((data_dir / "tmp").glob("landing-*/file-*.download"))
            progress["downloaded"] = sum(p.stat().st_size for p in parts if p.exists())
            return progress["downloaded"] > 1_000_000

        sigkill_when(child, mid_download, timeout=60, poll=0.02)
        downloaded = progress["downloaded"]
        assert 0 < downloaded < size  # killed in the middle of the download

        # Nothing partial visible: the partition is the previous version, byte for byte; readers that
        # glob the workflow's dataset see only complete part files.
        assert snapshot(target) == before
        assert unreadable_parts(data_dir) == []
        dataset = pq.read_table(data_dir / "results" / "wf", partitioning="hive")
        assert dataset.num_rows == 500
        dead_staging = [p.name for p in target.parent.iterdir() if p.name.startswith(".staging-")]
        dead_tmp = [p for p in (data_dir / "tmp").rglob("*") if p.is_file()] if (data_dir / "tmp").exists() else []

        # The next attempt (here, directly) lands everything the simulator served.
        result = land_execution(client, INSTANCE, big_id, big_columns, data_dir=data_dir, workflow="wf",
                                partition_key="k")
        assert result.rows == served_rows(sim, big_id) == 200_000
        assert pq.read_table(target).num_rows == 200_000
        assert sorted(p.name for p in target.iterdir()) == ["part-0000.parquet", "part-0001.parquet"]
        assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # dead staging cleaned
        assert unreadable_parts(data_dir) == []
        still = [p for p in leftovers(data_dir) if p not in dead_tmp]
        assert still == []
        print(f"\nkill -9 figures: killed after {downloaded} of {size} bytes; dead staging dirs before the "
              f"next landing: {len(dead_staging)}; dead temporary download files left in data/tmp: "
              f"{len(dead_tmp)}; partial files visible: 0")
