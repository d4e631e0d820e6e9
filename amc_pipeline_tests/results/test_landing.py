"""Full landings against the project's simulator over 127.0.0.1 (no HTTP mocks).

The expected data is what the simulator says it served (`served_files`), parsed independently with
the csv module and typed by hand, so the Parquet is compared value by value with the bytes sent.
"""

import csv
import datetime as dt
import io
import json
import logging
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from amc_pipeline.amc.client import AmcClient, AmcCredentials, execution_body
from amc_pipeline.config import InstanceConfig
from amc_pipeline.results import landing as landing_module
from amc_pipeline.results.convert_schema import ResultConversionError
from amc_pipeline.results.download import (
    ResultDownloadError,
    ResultFormatError,
    UnsafeDownloadUrlError,
    _classify,
    check_download_url,
)
from amc_pipeline.results.landing import land_execution
from amc_pipeline.results.layout import partition_dir
from amc_pipeline.simulator import Fault, Scenario, SimulatorConfig, SimulatorServer
from amc_pipeline_tests import constants

INSTANCE = InstanceConfig(**constants.INSTANCE)
SECRET_MARKERS = ("X-Amz-Signature", "X-Amz-Credential", constants.CLIENT_SECRET, constants.REFRESH_TOKEN)


@pytest.fixture
def sim():
    with SimulatorServer(SimulatorConfig(pending_seconds=0.1, running_seconds=0.1)) as server:
        yield server


@pytest.fixture
def client(sim):
    creds = AmcCredentials(**constants.CREDENTIALS, token_url=sim.token_url)
    with AmcClient(sim.url, creds) as amc:
        yield amc


def run_execution(sim, client, key: str, scenario: Scenario):
    """Create an execution of workflow `key` and wait for SUCCEEDED; (execution id, outputColumns)."""
    sim.set_scenario(key, scenario)
    body = execution_body(workflow_id=f"{key}-{uuid.uuid4().hex[:8]}", sql="SELECT 1",
                          window_start=datetime(2024, 1, 1, tzinfo=UTC),
                          window_end=datetime(2024, 1, 8, tzinfo=UTC), time_zone="UTC", timeout_seconds=3600)
    execution = client.create_execution(INSTANCE, body)
    for _ in range(600):  # a bound on polling, not a timing assertion
        execution = client.get_execution(INSTANCE, execution.execution_id)
        if execution.status == "SUCCEEDED":
            return execution.execution_id, execution.output_columns
        assert execution.status in ("PENDING", "RUNNING", "PUBLISHING"), execution
        time.sleep(0.05)
    raise AssertionError("execution never SUCCEEDED")


def snapshot(paths):
    return {p: Path(p).read_bytes() for p in paths}


def typed(value: str, data_type: str):
    if value == "":
        return None
    if data_type == "LONG":
        return int(value)
    if data_type == "DOUBLE":
        return float(value)
    if data_type == "DATE":
        return dt.date.fromisoformat(value)
    if data_type == "TIMESTAMP":
        fmt = "%Y-%m-%dT%H:%M:%S.%f" if "." in value else "%Y-%m-%dT%H:%M:%S"
        return dt.datetime.strptime(value, fmt)
    if data_type == "BOOLEAN":
        return value.lower() == "true"
    return value


def expected_rows(sim, execution_id, output_columns):
    types = {c.name: c.data_type for c in output_columns}
    rows = []
    for data in sim.served_files(execution_id):
        reader = csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""))
        rows.extend({k: typed(v, types.get(k, "STRING")) for k, v in row.items()} for row in reader)
    return rows


def assert_landed_equals_served(sim, execution_id, output_columns, result, data_dir, key):
    target = partition_dir(data_dir, "wf", key)
    table = pq.read_table(target)  # parts in file order, rows in file order
    expected = expected_rows(sim, execution_id, output_columns)
    assert result.rows == table.num_rows == len(expected)
    assert table.to_pylist() == expected
    assert result.bytes == sum((target / p).stat().st_size for p in result.parquet_files)
    assert result.uri == target.resolve().as_uri()
    assert result.schema == table.schema
    assert not (data_dir / "tmp").exists()  # downloaded CSVs deleted


def test_multi_file_result_keeps_every_row(sim, client, tmp_path):
    execution_id, columns = run_execution(sim, client, "multi", Scenario(rows=5000, files=5))
    result = land_execution(client, INSTANCE, execution_id, columns, data_dir=tmp_path, workflow="wf",
                            partition_key="2024-01-01")
    assert result.files == 5 and len(result.parquet_files) == 5
    assert [p.rsplit("/", 1)[1] for p in result.parquet_files] == [f"part-{i:04d}.parquet" for i in range(5)]
    assert_landed_equals_served(sim, execution_id, columns, result, tmp_path, "2024-01-01")
    assert result.schema.field("campaign_id").type == pa.int64()  # LONG with nulls stays int64
    assert result.schema.field("first_impression_time").type == pa.timestamp("ms")
    assert result.schema.field("date").type == pa.date32()
    assert len(result.preview) == 20
    json.dumps(result.preview)
    assert result.download_seconds >= 0
    assert set(result.content_types) == {"text/csv; charset=utf-8"} or all(
        "text/csv" in ct for ct in result.content_types)
    count = duckdb.sql(
        f"select count(*) from read_parquet('{tmp_path}/results/wf/*/*.parquet', hive_partitioning=true)"
    ).fetchall()[0][0]
    assert count == result.rows


def test_zero_rows(sim, client, tmp_path):
    execution_id, columns = run_execution(sim, client, "empty", Scenario(rows=0))
    result = land_execution(client, INSTANCE, execution_id, columns, data_dir=tmp_path, workflow="wf",
                            partition_key="2024-01-01")
    assert result.rows == 0 and result.files == 1 and result.preview == []
    table = pq.read_table(partition_dir(tmp_path, "wf", "2024-01-01"))
    assert table.num_rows == 0
    assert table.schema.field("impressions").type == pa.int64()
    assert table.schema.names == [c.name for c in columns]


@pytest.mark.parametrize("fault", ["expire_url", "truncate_download"])
def test_fault_in_the_middle_of_a_landing(sim, client, tmp_path, caplog, fault):
    execution_id, columns = run_execution(sim, client, "faulty", Scenario(rows=3000, files=3))

    def on_file(downloaded):
        if downloaded.index == 0:  # the next download (file 1) fails once
            sim.add_fault(Fault(kind=fault, endpoint="download", times=1))

    caplog.set_level(logging.DEBUG)
    before = sim.stats().get("download_urls", 0)
    # One download at a time, so "after file 0" is deterministic.
    result = land_execution(client, INSTANCE, execution_id, columns, data_dir=tmp_path, workflow="wf",
                            partition_key="2024-01-01", on_file=on_file, downloader_options={"workers": 1})
    assert result.files == 3
    assert_landed_equals_served(sim, execution_id, columns, result, tmp_path, "2024-01-01")
    assert sim.stats()["download"] == 4  # three files + one retry
    assert sim.stats()["download_urls"] - before == 2  # fresh URLs after the failure
    assert "attempt 1/" in caplog.text
    for marker in SECRET_MARKERS:
        assert marker not in caplog.text


@pytest.mark.parametrize("fault", ["expire_url", "truncate_download"])
def test_fault_during_concurrent_downloads(sim, client, tmp_path, fault):
    execution_id, columns = run_execution(sim, client, "concurrent", Scenario(rows=4000, files=5))
    sim.add_fault(Fault(kind=fault, endpoint="download", times=1))  # one of the first two downloads
    result = land_execution(client, INSTANCE, execution_id, columns, data_dir=tmp_path, workflow="wf",
                            partition_key="k", downloader_options={"workers": 2})
    assert result.files == 5
    assert_landed_equals_served(sim, execution_id, columns, result, tmp_path, "k")
    assert sim.stats()["download"] == 6


def test_url_expired_before_start_of_second_file_via_clock(sim, client, tmp_path):
    execution_id, columns = run_execution(sim, client, "clock", Scenario(rows=500, files=2))

    def on_file(downloaded):
        if downloaded.index == 0:
            sim.advance_clock(3600)  # every URL handed out so far is now expired

    result = land_execution(client, INSTANCE, execution_id, columns, data_dir=tmp_path, workflow="wf",
                            partition_key="k", on_file=on_file)
    assert_landed_equals_served(sim, execution_id, columns, result, tmp_path, "k")


def test_persistent_truncation_fails_and_keeps_previous_version(sim, client, tmp_path):
    execution_id, columns = run_execution(sim, client, "good", Scenario(rows=100, files=2))
    first = land_execution(client, INSTANCE, execution_id, columns, data_dir=tmp_path, workflow="wf",
                           partition_key="k")
    before = snapshot(first.parquet_files)
    sim.add_fault(Fault(kind="truncate_download", endpoint="download"))
    try:
        with pytest.raises(ResultDownloadError, match="after 3 attempts") as info:
            land_execution(client, INSTANCE, execution_id, columns, data_dir=tmp_path, workflow="wf",
                           partition_key="k", max_attempts=3,
                           downloader_options={"backoff_seconds": 0.0})
    finally:
        sim.clear_faults()
    for marker in SECRET_MARKERS:
        assert marker not in str(info.value)
    assert snapshot(first.parquet_files) == before
    assert sorted(p.name for p in (tmp_path / "results" / "wf").iterdir()) == ["window_start=k"]
    assert not (tmp_path / "tmp").exists()


def test_converter_failure_on_second_file_keeps_previous_version(sim, client, tmp_path, monkeypatch):
    execution_id, columns = run_execution(sim, client, "conv", Scenario(rows=300, files=3))
    first = land_execution(client, INSTANCE, execution_id, columns, data_dir=tmp_path, workflow="wf",
                           partition_key="k")
    before = snapshot(first.parquet_files)
    real = landing_module.convert_file

    def flaky(src, dest, *args, file_index=None, **kwargs):
        if file_index == 1:
            dest.write_bytes(b"PAR1 half written")
            raise RuntimeError("disk full while writing file 1")
        return real(src, dest, *args, file_index=file_index, **kwargs)

    monkeypatch.setattr(landing_module, "convert_file", flaky)
    with pytest.raises(RuntimeError, match="disk full"):
        land_execution(client, INSTANCE, execution_id, columns, data_dir=tmp_path, workflow="wf",
                       partition_key="k")
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == sorted(str(Path(p).relative_to(tmp_path)) for p in before)
    assert snapshot(first.parquet_files) == before


def test_malformed_csv_in_second_file_names_it(sim, client, tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("a,b\n1,x\n2,y\n", encoding="utf-8")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,x\n2,y,z\n", encoding="utf-8")
    data_dir = tmp_path / "data"
    execution_id, columns = run_execution(sim, client, "ragged", Scenario(result_files=[good, bad, good]))
    with pytest.raises(ResultConversionError) as info:
        land_execution(client, INSTANCE, execution_id, columns, data_dir=data_dir, workflow="wf",
                       partition_key="k")
    assert info.value.file_index == 1 and info.value.line == 3
    assert not partition_dir(data_dir, "wf", "k").exists()
    assert [p for p in data_dir.rglob("*") if p.is_file()] == []


def test_json_served_as_csv_is_a_clear_error(sim, client, tmp_path):
    src = tmp_path / "result.json"
    src.write_text('[{"a": 1}]', encoding="utf-8")
    scenario = Scenario(result_files=[src], columns=[("a", "LONG")])
    execution_id, _ = run_execution(sim, client, "jsonish", scenario)
    with pytest.raises(ResultFormatError, match="declared CSV .* but holds JSON"):
        land_execution(client, INSTANCE, execution_id, [("a", "LONG")], data_dir=tmp_path / "d",
                       workflow="wf", partition_key="k")


def test_url_on_another_host_is_refused(sim, client, tmp_path):
    execution_id, columns = run_execution(sim, client, "host", Scenario(rows=10, files=1))
    # The simulator signs URLs for 127.0.0.1; telling the lander the API lives elsewhere makes every
    # URL foreign, as a URL pointing at another host would be.
    with pytest.raises(UnsafeDownloadUrlError, match="refusing download URL on host '127.0.0.1'") as info:
        land_execution(client, INSTANCE, execution_id, columns, data_dir=tmp_path, workflow="wf",
                       partition_key="k", api_url=sim.url.replace("127.0.0.1", "localhost"))
    assert sim.stats().get("download", 0) == 0  # nothing fetched
    for marker in SECRET_MARKERS:
        assert marker not in str(info.value)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://amc-results.s3.amazonaws.com/a/b.csv?X-Amz-Signature=abc", True),
        ("https://bucket.s3.us-east-1.amazonaws.com/x.csv", True),
        ("http://bucket.s3.amazonaws.com/x.csv", False),  # S3 only over https
        ("https://amazonaws.com.evil.example/x.csv?X-Amz-Signature=abc", False),
        ("https://evil.example/x.csv", False),
        ("https://user:pw@bucket.s3.amazonaws.com/x.csv", False),
        ("https://advertising-api.amazon.com/_s3/x.csv", True),
        ("https://advertising-api.amazon.com:8443/_s3/x.csv", False),
        ("http://advertising-api.amazon.com/_s3/x.csv", False),
    ],
)
def test_check_download_url(url, ok):
    if ok:
        check_download_url(url, "https://advertising-api.amazon.com")
    else:
        with pytest.raises(UnsafeDownloadUrlError) as info:
            check_download_url(url, "https://advertising-api.amazon.com")
        assert "X-Amz-Signature" not in str(info.value) and "abc" not in str(info.value)


@pytest.mark.parametrize(
    ("content_type", "head", "expected"),
    [
        ("text/csv", b"a,b\n1,2\n", "csv"),
        ("application/json", b'{"a": 1}\n', "json"),
        ("application/x-ndjson", b'{"a": 1}\n', "json"),
        ("binary/octet-stream", b"a,b\n", "csv"),
        ("binary/octet-stream", b"[{}]", "json"),
        ("text/html; charset=utf-8", b"<html>", ResultFormatError),
        ("binary/octet-stream", b"  <!DOCTYPE html><html>", ResultFormatError),
        ("text/csv", b'{"a": 1}', ResultFormatError),
        ("application/json", b"a,b\n", ResultFormatError),
        ("application/xml", b"<?xml version='1.0'?><Error/>", ResultFormatError),
        ("image/png", b"\x89PNG", ResultFormatError),
    ],
)
def test_content_type_classification(content_type, head, expected):
    url = "https://b.s3.amazonaws.com/r?X-Amz-Signature=sig"
    if isinstance(expected, str):
        assert _classify(content_type, url, head, 0, "r") == expected
    else:
        with pytest.raises(expected):
            _classify(content_type, url, head, 0, "r")
