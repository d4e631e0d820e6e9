"""Results on object storage: landings against a real S3 API (moto's server on 127.0.0.1) and the
project's AMC simulator, no mocks of pyarrow or boto3.

What is checked is what the README promises a reader of plain Parquet on object storage: only the
new attempt's objects remain after a re-landing, a failed landing keeps the old version, and a
reader listing the folder during a re-landing sees at least one complete attempt at every moment,
old and new together only within the mixed window the landing measured.
"""

import logging
import threading
import time
import uuid

import duckdb
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from amc_pipeline.amc.client import AmcClient, AmcCredentials
from amc_pipeline.config import ConfigError, Settings, StorageConfig
from amc_pipeline.downstream import read_dataset, rollup_path, rollup_uri, weekly_rollup, write_rollup
from amc_pipeline.results.download import ResultDownloadError
from amc_pipeline.results.landing import land_execution
from amc_pipeline.results.storage import (
    STAGING_DIR,
    ResultsRoot,
    effective_results_uri,
    partition_uri,
    resolve_results_root,
    results_root,
)
from amc_pipeline.simulator import Fault, Scenario, SimulatorConfig, SimulatorServer
from amc_pipeline_tests import constants
from amc_pipeline_tests.results.test_landing import INSTANCE, expected_rows, run_execution
from amc_pipeline_tests.s3 import FAKE_SECRET_ACCESS_KEY, aws_env, s3_server

#: moto keeps one S3 backend per process (every s3_server() shares it): a bucket of our own.
BUCKET = f"amc-lake-{uuid.uuid4().hex[:8]}"
ROOT_URI = f"s3://{BUCKET}/results"


@pytest.fixture
def sim():
    with SimulatorServer(SimulatorConfig(pending_seconds=0.1, running_seconds=0.1)) as server:
        yield server


@pytest.fixture
def client(sim):
    with AmcClient(sim.url, AmcCredentials(**constants.CREDENTIALS, token_url=sim.token_url)) as amc:
        yield amc


@pytest.fixture
def s3(monkeypatch):
    with s3_server() as server:
        server.client.create_bucket(Bucket=BUCKET)
        empty_bucket(server.client)  # moto's backend outlives a server: start every test from nothing
        for name, value in aws_env(server.endpoint_url).items():
            monkeypatch.setenv(name, value)
        yield server


def empty_bucket(client) -> None:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for o in page.get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=o["Key"])
    for upload in client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []):
        client.abort_multipart_upload(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])


@pytest.fixture
def root(s3) -> ResultsRoot:
    return resolve_results_root(ROOT_URI)


def keys(s3, prefix: str = "") -> list[str]:
    out = []
    for page in s3.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        out += [o["Key"] for o in page.get("Contents", [])]
    return sorted(out)


def part_keys(s3, workflow: str, key: str) -> list[str]:
    return [k for k in keys(s3, f"results/{workflow}/window_start={key}/") if k.endswith(".parquet")]


def etags(s3, prefix: str) -> dict[str, str]:
    return {o["Key"]: o["ETag"] for o in s3.client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])}


def staging_objects(s3) -> list[str]:
    return [k for k in keys(s3, f"results/{STAGING_DIR}/") if not k.endswith("/")]


def land(sim, client, root, execution_id, columns, tmp_path, key="2024-01-01", **kwargs):
    return land_execution(client, INSTANCE, execution_id, columns, data_dir=tmp_path / "data", workflow="wf",
                          partition_key=key, results=root, **kwargs)


# --- resolving the root ---------------------------------------------------------------------------

def test_resolve_local_file_and_default(tmp_path, monkeypatch):
    monkeypatch.delenv("AMC_PIPELINE_RESULTS_URI", raising=False)
    monkeypatch.setenv("AMC_PIPELINE_DATA_DIR", str(tmp_path / "data"))
    default = results_root()
    assert default.is_local and default.path == str((tmp_path / "data" / "results").resolve())
    assert results_root(StorageConfig(results_uri=str(tmp_path / "elsewhere"))).path == str(tmp_path / "elsewhere")
    as_uri = resolve_results_root((tmp_path / "with space").as_uri())
    assert as_uri.path == str(tmp_path / "with space")
    assert partition_uri(as_uri, "wf", "2024-01-01") == (tmp_path / "with space" / "wf" /
                                                        "window_start=2024-01-01").as_uri()
    monkeypatch.setenv("AMC_PIPELINE_RESULTS_URI", "s3://from-env/p")
    assert effective_results_uri(StorageConfig(results_uri="s3://from-yaml/p")) == "s3://from-env/p"
    monkeypatch.setenv("AMC_PIPELINE_RESULTS_URI", "ftp://x/y")
    with pytest.raises(ConfigError, match="AMC_PIPELINE_RESULTS_URI: unsupported scheme 'ftp'"):
        Settings.from_env()


def test_bad_uris_name_the_field_and_never_echo_credentials():
    for uri, message in [("ftp://host/x", "unsupported scheme"), ("s3:///prefix", "bucket is missing"),
                         (f"s3://AKIAX:{FAKE_SECRET_ACCESS_KEY}@bucket/p", "credentials are not allowed")]:
        with pytest.raises(ValueError, match=message) as info:
            resolve_results_root(uri)
        assert "storage.results_uri" in str(info.value)
        assert FAKE_SECRET_ACCESS_KEY not in str(info.value)


def test_resolve_s3_reads_the_aws_environment(root):
    assert isinstance(root.filesystem, pafs.S3FileSystem)
    assert root.uri == ROOT_URI and root.path == f"{BUCKET}/results"
    assert partition_uri(root, "wf", "2024-01-01") == f"{ROOT_URI}/wf/window_start=2024-01-01/"
    assert FAKE_SECRET_ACCESS_KEY not in repr(root)


# --- landing on S3 --------------------------------------------------------------------------------

def test_land_on_s3(sim, client, s3, root, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    execution_id, columns = run_execution(sim, client, "lake", Scenario(rows=3000, files=3))
    result = land(sim, client, root, execution_id, columns, tmp_path)
    assert result.uri == f"{ROOT_URI}/wf/window_start=2024-01-01/"
    parts = part_keys(s3, "wf", "2024-01-01")
    assert len(parts) == 3 and all(p.split("/")[-1].startswith("part-") for p in parts)
    assert [f"{BUCKET}/{p}" for p in parts] == result.parquet_files
    assert staging_objects(s3) == []
    assert s3.client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    table = ds.dataset(root.partition_path("wf", "2024-01-01"), filesystem=root.filesystem,
                       format="parquet").to_table()
    assert table.to_pylist() == expected_rows(sim, execution_id, columns)
    assert result.rows == table.num_rows == 3000
    assert result.bytes == sum(root.filesystem.get_file_info(p).size for p in result.parquet_files)
    assert result.mixed_window is not None and result.mixed_window_seconds >= 0
    assert not (tmp_path / "data" / "results").exists()  # nothing landed locally
    assert not (tmp_path / "data" / "tmp").exists()  # the local staging is gone
    assert "both listed for" in caplog.text
    assert FAKE_SECRET_ACCESS_KEY not in caplog.text and FAKE_SECRET_ACCESS_KEY not in repr(result)


def test_reland_leaves_only_the_new_attempt(sim, client, s3, root, tmp_path):
    first_id, columns = run_execution(sim, client, "first", Scenario(rows=500, files=3))
    first = land(sim, client, root, first_id, columns, tmp_path)
    second_id, columns2 = run_execution(sim, client, "second", Scenario(rows=200, files=2))
    second = land(sim, client, root, second_id, columns2, tmp_path)
    parts = part_keys(s3, "wf", "2024-01-01")
    assert [f"{BUCKET}/{p}" for p in parts] == second.parquet_files and len(parts) == 2
    assert not set(first.parquet_files) & set(second.parquet_files)
    assert read_dataset("wf", root).num_rows == 200
    assert staging_objects(s3) == []


def test_expired_download_url_mid_stream_on_s3(sim, client, s3, root, tmp_path):
    execution_id, columns = run_execution(sim, client, "expiring", Scenario(rows=3000, files=3))

    def on_file(downloaded):
        if downloaded.index == 0:  # the next download's URL has expired
            sim.add_fault(Fault(kind="expire_url", endpoint="download", times=1))

    result = land(sim, client, root, execution_id, columns, tmp_path, on_file=on_file,
                  downloader_options={"workers": 1})
    assert result.files == 3 and sim.stats()["download"] == 4
    table = ds.dataset(root.partition_path("wf", "2024-01-01"), filesystem=root.filesystem,
                       format="parquet").to_table()
    assert table.to_pylist() == expected_rows(sim, execution_id, columns)


def test_failed_landing_keeps_the_previous_objects(sim, client, s3, root, tmp_path):
    good_id, columns = run_execution(sim, client, "good", Scenario(rows=100, files=2))
    land(sim, client, root, good_id, columns, tmp_path)
    before = etags(s3, "results/wf/")
    sim.add_fault(Fault(kind="truncate_download", endpoint="download"))
    try:
        with pytest.raises(ResultDownloadError):
            land(sim, client, root, good_id, columns, tmp_path, max_attempts=2,
                 downloader_options={"backoff_seconds": 0.0})
    finally:
        sim.clear_faults()
    assert etags(s3, "results/wf/") == before
    assert staging_objects(s3) == []


def test_upload_failure_keeps_the_previous_objects_and_says_no_secret(sim, client, s3, root, tmp_path):
    good_id, columns = run_execution(sim, client, "good2", Scenario(rows=100, files=1))
    land(sim, client, root, good_id, columns, tmp_path)
    before = etags(s3, "results/wf/")
    wrong = resolve_results_root(f"s3://{BUCKET}-missing/results")  # no such bucket: every upload fails
    with pytest.raises(OSError) as info:
        land(sim, client, wrong, good_id, columns, tmp_path, key="2024-01-01")
    assert FAKE_SECRET_ACCESS_KEY not in str(info.value)
    assert etags(s3, "results/wf/") == before


def test_reader_during_relanding_never_sees_nothing_or_a_partial_file(sim, client, s3, root, tmp_path):
    """A reader listing and reading the dataset with pyarrow while the window is landed again and again."""
    ids = [run_execution(sim, client, f"attempt{i}", Scenario(rows=2000, files=4)) for i in range(4)]
    land(sim, client, root, *ids[0], tmp_path)
    folder = root.workflow_path("wf")
    stop = threading.Event()
    seen: list[tuple[float, float, set[str], int]] = []  # (listed from, until, attempt tokens, files)
    problems: list[str] = []
    vanished: list[tuple[float, str]] = []

    def reader():
        while not stop.is_set():
            started = time.time()
            try:
                dataset = ds.dataset(folder, filesystem=root.filesystem, format="parquet", partitioning="hive",
                                     ignore_prefixes=[".", "_"])
            except OSError as exc:
                # Discovery opens the first part for the schema: a previous attempt's part deleted in
                # the mixed window after the listing. The same retry a reader needs; anything else counts.
                if any(code in str(exc) for code in ("NO_SUCH_KEY", "RESOURCE_NOT_FOUND", "Could not open")):
                    vanished.append((time.time(), str(exc)[:200]))
                else:
                    problems.append(f"listing: {exc}")
                continue
            files = dataset.files
            ended = time.time()
            tokens = {f.rsplit("/", 1)[1].split("-")[1] for f in files}
            seen.append((started, ended, tokens, len(files)))
            for path in files:
                try:
                    with root.filesystem.open_input_file(path) as f:
                        table = pq.read_table(f)
                    if table.num_rows != pq.read_metadata(root.filesystem.open_input_file(path)).num_rows:
                        problems.append(f"{path}: rows differ from its footer")
                except OSError as exc:
                    # Deleted between listing and reading (the previous attempt's, in the mixed
                    # window): pyarrow says so at open (FileNotFoundError) or at GetObject.
                    if isinstance(exc, FileNotFoundError) or any(
                            code in str(exc) for code in ("RESOURCE_NOT_FOUND", "NO_SUCH_KEY")):
                        vanished.append((time.time(), path))
                    else:
                        problems.append(f"{path}: {exc}")
                except Exception as exc:  # noqa: BLE001 - a partial object would land here
                    problems.append(f"{path}: {exc}")

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    results = []
    try:
        for execution_id, columns in ids[1:]:
            time.sleep(0.2)
            results.append(land(sim, client, root, execution_id, columns, tmp_path))
        time.sleep(0.2)
    finally:
        stop.set()
        thread.join(timeout=30)
    windows = [r.mixed_window for r in results]
    assert problems == []
    assert seen and min(n for _, _, _, n in seen) >= 1  # never zero files
    mixed = [(a, b) for a, b, tokens, _ in seen if len(tokens) > 1]
    newest = results[-1].parquet_files[0].rsplit("/", 1)[1].split("-")[1]
    assert all(newest not in path for _, path in vanished)  # only a previous attempt's part ever vanishes
    for a, b in mixed:  # two attempts listed together only while a landing was in its mixed window
        assert any(a <= end and b >= start for start, end in windows), (a, b, windows)
    longest = max(r.mixed_window_seconds for r in results)
    print(f"\nreader: {len(seen)} listings, {len(mixed)} saw two attempts, {len(vanished)} files vanished between "
          f"listing and reading; mixed windows {[r.mixed_window_seconds for r in results]} s (max {longest})")
    assert part_keys(s3, "wf", "2024-01-01") == [p.split("/", 1)[1] for p in results[-1].parquet_files]


# --- downstream --------------------------------------------------------------------------------

def test_downstream_reads_and_rollup_on_s3(sim, client, s3, root, tmp_path):
    execution_id, columns = run_execution(sim, client, "campaigns", Scenario(rows=300, files=2))
    for key in ("2024-01-01", "2024-01-02"):
        land(sim, client, root, execution_id, columns, tmp_path, key=key)
    table = read_dataset("wf", root)
    assert table.num_rows == 600
    assert sorted(set(table["window_start"].to_pylist())) == ["2024-01-01", "2024-01-02"]

    # DuckDB over the same objects. Its httpfs extension cannot be installed offline here, so it
    # scans the pyarrow dataset (S3FileSystem) instead; README shows the httpfs form.
    dataset = ds.dataset(root.workflow_path("wf"), filesystem=root.filesystem, format="parquet",
                         partitioning="hive", ignore_prefixes=[".", "_"])
    con = duckdb.connect()
    con.register("results", dataset)
    counts = con.sql("SELECT window_start, count(*) AS n FROM results GROUP BY 1 ORDER BY 1").fetchall()
    con.close()
    assert [(str(k), n) for k, n in counts] == [("2024-01-01", 300), ("2024-01-02", 300)]

    rollup = weekly_rollup(table)
    write_rollup(rollup, rollup_path(root), root)
    assert rollup_uri(root) == f"{ROOT_URI}/_rollups/campaign_performance_weekly.parquet"
    assert "results/_rollups/campaign_performance_weekly.parquet" in keys(s3)
    back = pq.read_table(rollup_path(root), filesystem=root.filesystem)
    assert back.num_rows == rollup.num_rows
    assert read_dataset("wf", root).num_rows == 600  # the roll-up is not part of any workflow's dataset
