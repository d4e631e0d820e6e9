"""downloadUrls, pre-signed URL rules and the CSV content rules."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import httpx

from amc_pipeline.simulator import Scenario, SimulatorServer

from .api import Api


def fetch_rows(url: str) -> list[list[str]]:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert int(response.headers["content-length"]) == len(response.content)
    return list(csv.reader(io.StringIO(response.content.decode("utf-8"), newline="")))


def test_download_urls_only_once_succeeded(api: Api) -> None:
    execution_id = api.create().json()["workflowExecutionId"]
    response = api.urls(execution_id)
    assert response.status_code == 400
    assert response.json()["code"] == "400"
    api.sim.advance_clock(1)
    body = api.urls(execution_id).json()
    assert set(body) == {"downloadUrls", "metadataDownloadUrls"}
    assert 1 <= len(body["downloadUrls"]) <= 5
    assert len(body["metadataDownloadUrls"]) == len(body["downloadUrls"])
    for url in body["downloadUrls"]:
        assert url.startswith(api.sim.url + "/_s3/")
        assert re.search(r"\.csv\?X-Amz-Algorithm=.*X-Amz-Date=.*X-Amz-Expires=600.*X-Amz-Signature=[0-9a-f]+", url)
    meta = httpx.get(body["metadataDownloadUrls"][0]).json()
    assert meta["columns"] == api.get(execution_id).json()["outputColumns"]


def test_csv_content_rules(api: Api) -> None:
    api.sim.set_scenario("tricky", Scenario(rows=60, files=3))
    execution_id = api.succeeded(workflow_id="tricky-1")
    record = api.get(execution_id).json()
    columns = record["outputColumns"]
    names = [c["name"] for c in columns]
    urls = api.urls(execution_id).json()["downloadUrls"]
    assert len(urls) == 3
    rows = []
    for url in urls:
        parsed = fetch_rows(url)
        assert parsed[0] == names  # every file has the header
        rows.extend(parsed[1:])
    assert len(rows) == 60
    assert all(len(r) == len(names) for r in rows)
    values = [v for r in rows for v in r]
    assert any("," in v for v in values)
    assert any('"' in v for v in values)
    assert any("\n" in v for v in values)
    assert any(not v.isascii() for v in values)
    assert any(v == "" for v in values)
    by_type: dict[str, list[str]] = {}
    for i, col in enumerate(columns):
        by_type.setdefault(col["dataType"], []).extend(r[i] for r in rows)
    assert "" in by_type["LONG"]  # nulls in a LONG column
    assert all(v == "" or re.fullmatch(r"-?\d+", v) for v in by_type["LONG"])
    assert all(v == "" or float(v) >= 0 for v in by_type["DOUBLE"])
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", v) for v in by_type["DATE"])
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}", v) for v in by_type["TIMESTAMP"])
    served = b"".join(api.sim.served_files(execution_id))
    downloaded = b"".join(httpx.get(u).content for u in urls)
    assert served == downloaded


def test_default_results_are_deterministic_and_in_range(api: Api) -> None:
    first = api.succeeded(workflow_id="det-a")
    second = api.succeeded(workflow_id="det-b")  # same key "det", same window
    assert api.sim.served_files(first) == api.sim.served_files(second)
    rows = sum(len(list(csv.reader(io.StringIO(b.decode(), newline="")))) - 1 for b in api.sim.served_files(first))
    assert 20 <= rows <= 300
    other_window = api.succeeded(
        workflow_id="det-c", timeWindowStart="2024-02-01T00:00:00", timeWindowEnd="2024-02-02T00:00:00"
    )
    assert api.sim.served_files(other_window) != api.sim.served_files(first)


def test_zero_rows_is_header_only(api: Api) -> None:
    api.sim.set_scenario("empty", Scenario(rows=0))
    execution_id = api.succeeded(workflow_id="empty-1")
    urls = api.urls(execution_id).json()["downloadUrls"]
    assert len(urls) == 1
    rows = fetch_rows(urls[0])
    assert len(rows) == 1 and rows[0][0] == "advertiser"


def test_custom_columns_and_result_files(api: Api, tmp_path: Path) -> None:
    given = tmp_path / "given.csv"
    given.write_bytes(b'a,b\n1,"x,y"\n2,\n')
    api.sim.set_scenario(
        "given", Scenario(result_files=[given], columns=[("a", "LONG"), {"name": "b", "dataType": "STRING"}])
    )
    execution_id = api.succeeded(workflow_id="given-1")
    record = api.get(execution_id).json()
    assert [(c["name"], c["dataType"]) for c in record["outputColumns"]] == [("a", "LONG"), ("b", "STRING")]
    urls = api.urls(execution_id).json()["downloadUrls"]
    assert httpx.get(urls[0]).content == given.read_bytes()


def test_url_expiry_and_tampering(api: Api) -> None:
    execution_id = api.succeeded()
    url = api.urls(execution_id).json()["downloadUrls"][0]
    tampered = re.sub(r"X-Amz-Expires=\d+", "X-Amz-Expires=999999", url)
    response = httpx.get(tampered)
    assert response.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in response.text
    other_file = url.replace("part-0000", "part-0001")
    assert httpx.get(other_file).status_code == 403
    unsigned = url.split("?")[0]
    assert httpx.get(unsigned).status_code == 403
    api.sim.advance_clock(601)
    expired = httpx.get(url)
    assert expired.status_code == 403
    assert "<Code>AccessDenied</Code>" in expired.text and "Request has expired" in expired.text
    fresh = api.urls(execution_id).json()["downloadUrls"][0]
    assert httpx.get(fresh).status_code == 200


def test_large_result_streams_with_content_length(sim: SimulatorServer, api: Api, tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    line = b"x,y\n" + b"1234567890,abcdefghij\n" * 200_000
    big.write_bytes(line)
    sim.set_scenario("big", Scenario(result_files=[str(big)]))
    execution_id = api.succeeded(workflow_id="big-1")
    url = api.urls(execution_id).json()["downloadUrls"][0]
    total = 0
    with httpx.stream("GET", url) as response:
        assert int(response.headers["content-length"]) == len(line)
        for chunk in response.iter_bytes():
            total += len(chunk)
    assert total == len(line)


def test_metadata_is_json(api: Api) -> None:
    execution_id = api.succeeded()
    url = api.urls(execution_id).json()["metadataDownloadUrls"][0]
    assert json.loads(httpx.get(url).content)["workflowExecutionId"] == execution_id
