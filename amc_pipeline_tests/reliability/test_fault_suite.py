"""A 30-day backfill of one daily workflow with every simulator fault injected at 20 %.

What it proves (docs/architecture.md, "The lifecycle" and "Why it is shaped this way"): whatever AMC and
S3 throw at us — throttling with Retry-After, 500s, gateway timeouts, slow answers, dropped connections,
create responses lost after the execution was created, truncated downloads, expired URLs, revoked tokens
— every partition lands exactly once with every row the simulator served, no window gets a second AMC
execution, and no reader ever sees a partial file.

As in a deployment, the monitor runs beside the landings: a thread makes monitor passes (submit + poll,
the amc_monitor job's work) while the test thread does what the landing sensor's runs do — materialize
each landable partition through Dagster (`dagster.materialize`, a real instance), and materialize it again
after a failed run once its back-off has passed, up to a bound.

It runs twice: results on local disk, and results on S3 (moto's S3 server on 127.0.0.1,
AMC_PIPELINE_RESULTS_URI=s3://<bucket>/lake, the pipeline's object-store publishing). On S3 it also proves,
from the bucket itself: every object under the workflow's prefix is a complete Parquet file whose footer
reads, each window folder holds one attempt's token only, no staged part is left under `_staging/`, no
multipart upload is left open, and each window's rows on S3 are what the simulator served.
"""

import io
import re
import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pyarrow.parquet as pq
import pytest

from amc_pipeline.definitions import build_definitions
from amc_pipeline.simulator import Fault, Scenario
from amc_pipeline_tests.harness import rig
from amc_pipeline_tests.reliability.common import (
    executions_by_window,
    leftovers,
    materialize,
    served_rows,
    unreadable_parts,
)
from amc_pipeline_tests.s3 import aws_env, s3_server

WORKFLOW = "daily_sales"
START = date(2026, 9, 1)
KEYS = [(START + timedelta(days=i)).isoformat() for i in range(30)]
PROBABILITY = 0.2
SEED = 20261129
#: AMC API endpoints (the Login with Amazon token endpoint included); "download" is the S3 side.
API_ENDPOINTS = ("token", "create", "get", "list", "download_urls")
#: Bounds on the loops (not timing assertions).
DEADLINE_SECONDS = 240
MAX_LANDING_ATTEMPTS = 25
#: Revoke every issued token when this many partitions have landed (the next request's token is dead).
REVOKE_AFTER = (3, 15)


def build_faults() -> list[Fault]:
    """Every fault kind at 20 % of the requests it applies to.

    The simulator applies the first matching fault, so faults stack: with all eight kinds on every
    endpoint ~83 % of downloads would fail, and the downloader's own back-off would make this a
    ten-minute test. HTTP-level faults (429 with Retry-After, 500, 504, dropped connection) therefore
    hit the AMC API and token endpoints, and the S3 side gets its own faults (truncated body, expired
    URL); slow answers hit everything, lost create responses hit creates. Revoked tokens are injected
    at two moments (see the test).
    """
    faults = [Fault(kind=kind, endpoint=endpoint, probability=PROBABILITY, retry_after=1)
              for kind in ("throttle", "error500", "timeout504", "drop") for endpoint in API_ENDPOINTS]
    faults += [
        Fault(kind="slow", probability=PROBABILITY, delay_seconds=0.1),
        Fault(kind="lost_create_response", endpoint="create", probability=PROBABILITY),
        Fault(kind="truncate_download", endpoint="download", probability=PROBABILITY),
        Fault(kind="expire_url", endpoint="download", probability=PROBABILITY),
    ]
    return faults


def count_faults(sim) -> Counter:
    """Count each fault the simulator injects (its stats count requests per endpoint, not faults).

    Wraps the running simulator's own fault selection; the faults themselves are unchanged."""
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


class MonitorThread(threading.Thread):
    """Monitor passes back to back until stopped; an exception is kept and fails the test."""

    def __init__(self, r) -> None:
        super().__init__(name="monitor-passes", daemon=True)
        self.r = r
        self.stop = threading.Event()
        self.passes = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.r.monitor_pass()
                self.passes += 1
                self.stop.wait(0.5)  # the monitor sensor ticks every second in FAST_MONITOR
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            self.error = exc


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AMC_PIPELINE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


#: Results on S3: the prefix under a bucket of this test's own (moto's backend is shared per process).
S3_PREFIX = "lake"
PART_KEY = re.compile(rf"^{S3_PREFIX}/{WORKFLOW}/window_start=(\d{{4}}-\d\d-\d\d)/part-([0-9a-f]+)-(\d{{4}})\.parquet$")


class S3Results:
    """The S3 side of the S3 variant: moto's server, a unique bucket, and reading it back independently
    of the pipeline (boto3 GETs, pyarrow reading the bytes)."""

    def __init__(self, client, bucket: str) -> None:
        self.client, self.bucket = client, bucket
        self.uri = f"s3://{bucket}/{S3_PREFIX}"

    def objects(self, prefix: str) -> dict[str, int]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}

    def open_uploads(self) -> list[dict]:
        return self.client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])

    def read_part(self, key: str) -> int:
        """Rows of one object, read whole: its footer must parse and its row groups read completely."""
        blob = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        parquet = pq.ParquetFile(io.BytesIO(blob))
        table = parquet.read()
        assert table.num_rows == parquet.metadata.num_rows, key
        return table.num_rows


@pytest.fixture
def s3_results(request, monkeypatch):
    """None for results on local disk; for "s3", moto's server with the AWS_* environment pointing at it."""
    if request.param == "local":
        yield None
        return
    with s3_server() as s3:
        bucket = f"amc-faults-{uuid.uuid4().hex[:8]}"
        s3.client.create_bucket(Bucket=bucket)
        target = S3Results(s3.client, bucket)
        for name, value in aws_env(s3.endpoint_url).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AMC_PIPELINE_RESULTS_URI", target.uri)
        yield target


def check_s3(s3: S3Results, r, data_dir) -> dict[str, int]:
    """Everything a reader of the bucket can see after the backfill; returns the figures printed."""
    everything = s3.objects("")
    dataset = {k: v for k, v in everything.items() if k.startswith(f"{S3_PREFIX}/{WORKFLOW}/")}
    staging = {k: v for k, v in everything.items() if k.startswith(f"{S3_PREFIX}/_staging/")}
    # pyarrow's delete_dir of a staging folder re-creates its parent as a zero-byte "dir/" marker: no
    # data, no part; anything else under _staging/ is a staged object left behind.
    staged_left = {k: v for k, v in staging.items() if not (k.endswith("/") and v == 0)}
    assert staged_left == {}
    assert set(everything) == set(dataset) | set(staging)  # nothing else in the bucket
    assert s3.open_uploads() == []

    tokens: dict[str, set[str]] = defaultdict(set)
    rows: Counter = Counter()
    for key in sorted(dataset):
        match = PART_KEY.match(key)
        assert match, f"not a part of a window: {key}"
        window, token, _ = match.groups()
        tokens[window].add(token)
        rows[window] += s3.read_part(key)  # a partial object would fail here
    assert sorted(tokens) == KEYS
    assert {w: len(t) for w, t in tokens.items()} == {k: 1 for k in KEYS}  # one attempt per window
    for key in KEYS:
        execution = r.store.get_live(WORKFLOW, key)
        assert rows[key] == served_rows(r.sim, execution.attempt.amc_execution_id) == execution.rows, key
        assert execution.uri == f"{s3.uri}/{WORKFLOW}/window_start={key}/"
    # The landings converted on local disk only: no results folder, no temporary file left.
    assert not (data_dir / "results").exists()
    assert leftovers(data_dir) == []
    return {"objects": len(dataset), "staging_markers": len(staging), "rows": sum(rows.values()),
            "open_uploads": 0, "partial": 0, "windows_with_two_tokens": 0}


@pytest.mark.parametrize("s3_results", ["local", "s3"], indirect=True)
def test_backfill_under_every_fault(data_dir, tmp_path, s3_results):
    started = time.monotonic()
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
            assert len(r.store.list_executions(workflow=WORKFLOW)) == len(KEYS)
            assert all(r.status(WORKFLOW, k) == "QUEUED" for k in KEYS)
            for fault in build_faults():
                r.sim.add_fault(fault)

            monitor = MonitorThread(r)
            monitor.start()
            landed_runs: Counter = Counter()
            failed_runs: Counter = Counter()
            revoked = 0
            try:
                while time.monotonic() - started < DEADLINE_SECONDS:
                    assert monitor.error is None, monitor.error
                    for execution in r.store.landable(datetime.now(UTC), limit=100):
                        assert execution.land_attempts < MAX_LANDING_ATTEMPTS, (
                            f"{execution.partition_key}: landing gave up: {execution.land_error}")
                        if revoked < len(REVOKE_AFTER) and sum(landed_runs.values()) >= REVOKE_AFTER[revoked]:
                            r.sim.add_fault(Fault(kind="revoke_token", times=1))
                            revoked += 1
                        result = materialize(r, defs, WORKFLOW, execution.partition_key, instance)
                        if result.success and result.get_asset_materialization_events():
                            landed_runs[execution.partition_key] += 1
                        else:
                            failed_runs[execution.partition_key] += 1
                    if all(r.store.get_live(WORKFLOW, k).landed_at for k in KEYS):
                        break
                    time.sleep(0.05)
                else:
                    pytest.fail(f"not all landed within {DEADLINE_SECONDS}s: "
                                f"{[k for k in KEYS if not r.store.get_live(WORKFLOW, k).landed_at]}")
            finally:
                monitor.stop.set()
                monitor.join(timeout=60)
            assert monitor.error is None, monitor.error
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

            # No duplicate AMC execution per window: a second one is allowed only as the retry of one
            # that failed, and every AMC execution is one of our attempts.
            ours = {a.amc_execution_id for k in KEYS for a in r.store.attempts_for(r.store.get_live(WORKFLOW, k).id)}
            groups = executions_by_window(r.sim)
            assert set(groups) == {(WORKFLOW, k) for k in KEYS}
            duplicates = 0
            for (_, key), records in groups.items():
                assert all(rec["workflowExecutionId"] in ours for rec in records), key
                failed = [rec for rec in records if rec["status"] != "SUCCEEDED"]
                duplicates += len(records) - 1 - len(failed)
            assert duplicates == 0

            if s3_results is None:
                # Nothing partial or staged visible; every part readable; one folder per partition.
                partial = leftovers(data_dir) + unreadable_parts(data_dir)
                assert partial == []
                assert sorted(p.name for p in (data_dir / "results" / WORKFLOW).iterdir()) == [
                    f"window_start={k}" for k in KEYS]
            else:
                s3_figures = check_s3(s3_results, r, data_dir)
                partial = []
            requests = r.sim.stats()

    print(
        f"\nfault suite figures ({'results on S3, ' + s3_results.uri if s3_results else 'results on local disk'}):"
        f"\n  faults injected by kind: {dict(sorted(injected.items()))} (total {sum(injected.values())}"
        f" in {sum(requests.values())} requests; revoke_token scheduled {revoked}x)"
        f"\n  partitions landed: {len(per_partition)}/{len(KEYS)}; landing runs that failed and were retried:"
        f" {sum(failed_runs.values())}; monitor passes: {monitor.passes}"
        f"\n  duplicate AMC executions: {duplicates}; partial or staging files: {len(partial)}"
        + (f"\n  S3: {s3_figures['objects']} part objects, all complete Parquet ({s3_figures['rows']} rows = served);"
           f" one token per window; staged objects left 0 (empty _staging dir markers:"
           f" {s3_figures['staging_markers']}); open multipart uploads 0" if s3_results else "")
        + f"\n  elapsed: {time.monotonic() - started:.1f}s"
    )
