"""kill -9 in the middle of an upload to S3: the old version stays, nothing partial is visible, and the
next landing aborts the multipart upload the dead one left open.

A child process lands a large result (200 000 rows) into s3://…/results on moto's S3 server, through a
TCP proxy that throttles what the child sends (so the upload takes seconds). The test SIGKILLs it once
its multipart upload is open under `_staging/`, then checks what a reader can see and that the next
landing (in this process) replaces the window, removes the dead staging and aborts the open upload.
"""

import json
import os
import subprocess
import sys
import uuid

import pyarrow.parquet as pq

from amc_pipeline.amc.client import AmcClient
from amc_pipeline.downstream import read_dataset
from amc_pipeline.results.landing import land_execution
from amc_pipeline.results.storage import resolve_results_root
from amc_pipeline.simulator import Scenario, SimulatorServer
from amc_pipeline_tests.harness import FAST_RETRY, credentials, sim_config
from amc_pipeline_tests.reliability.common import served_rows, sigkill_when
from amc_pipeline_tests.reliability.proxy import TcpProxy
from amc_pipeline_tests.reliability.test_kill_download import CHILD, INSTANCE, PROJECT, run_to_success
from amc_pipeline_tests.s3 import aws_env, s3_server

#: moto keeps one S3 backend per process (every s3_server() shares it): a bucket of our own.
BUCKET = f"amc-lake-{uuid.uuid4().hex[:8]}"
ROOT_URI = f"s3://{BUCKET}/results"


class UploadThrottle(TcpProxy):
    """The reliability proxy, throttling client→server (uploads) instead of server→client."""

    def _pump(self, src, dst, throttle):
        super()._pump(src, dst, not throttle)


def objects(client, prefix: str) -> dict[str, str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}


def open_uploads(client, prefix: str = "results/_staging/") -> list[dict]:
    return client.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", [])


def test_sigkill_mid_upload_keeps_old_version_and_next_landing_aborts_the_upload(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    scenarios = {"old": Scenario(rows=500, files=1), "big": Scenario(rows=200_000, files=1)}
    with s3_server() as s3, SimulatorServer(sim_config(scenarios=scenarios)) as sim, \
            AmcClient(sim.url, credentials(sim), retry=FAST_RETRY) as client, \
            UploadThrottle("127.0.0.1", int(s3.endpoint_url.rsplit(":", 1)[1]), bytes_per_second=1_000_000) as proxy:
        s3.client.create_bucket(Bucket=BUCKET)
        for name, value in aws_env(s3.endpoint_url).items():
            monkeypatch.setenv(name, value)
        root = resolve_results_root(ROOT_URI)
        old_id, old_columns = run_to_success(sim, client, "old")
        land_execution(client, INSTANCE, old_id, old_columns, data_dir=data_dir, workflow="wf", partition_key="k",
                       results=root)
        before = objects(s3.client, "results/wf/")
        assert len(before) == 1

        big_id, big_columns = run_to_success(sim, client, "big")
        child_env = {**os.environ, **aws_env(f"http://127.0.0.1:{proxy.port}")}
        child = subprocess.Popen(
            [sys.executable, "-m", CHILD, sim.url, sim.token_url, str(data_dir), "wf", "k", big_id,
             json.dumps(big_columns), ROOT_URI],
            cwd=PROJECT, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        # Killed while a multipart upload is open: part of the part is on its way.
        sigkill_when(child, lambda: bool(open_uploads(s3.client)), timeout=90, poll=0.01, settle=0.5)

        # What a reader sees: the previous version, object for object; no partial object anywhere.
        assert objects(s3.client, "results/wf/") == before
        assert [k for k in objects(s3.client, "results/_staging/") if not k.endswith("/")] == []
        assert read_dataset("wf", root).num_rows == 500
        [dead] = open_uploads(s3.client)
        assert dead["Key"].startswith("results/_staging/wf/k-")

        # The next landing: cleans the dead landing's upload (moto reports every upload as initiated in
        # 2010, so age 0 is asked for explicitly rather than relying on that), then lands every row.
        result = land_execution(client, INSTANCE, big_id, big_columns, data_dir=data_dir, workflow="wf",
                                partition_key="k", results=root, stale_staging_seconds=0)
        assert open_uploads(s3.client) == []
        assert result.rows == served_rows(sim, big_id) == 200_000
        after = objects(s3.client, "results/wf/")
        assert [f"{BUCKET}/{k}" for k in after if k.endswith(".parquet")] == result.parquet_files
        assert not set(after) & set(before)
        assert [k for k in objects(s3.client, "results/_staging/") if not k.endswith("/")] == []
        with root.filesystem.open_input_file(result.parquet_files[0]) as f:
            assert pq.read_table(f).num_rows == 200_000
        print(f"\nkill -9 mid-upload: open multipart uploads after the kill 1, after the next landing 0; "
              f"mixed window of the next landing {result.mixed_window_seconds * 1000:.0f} ms")
