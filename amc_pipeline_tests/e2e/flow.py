"""What the e2e tests do and read over the wire: Dagster's GraphQL API, the AMC API, the simulator's admin
API, and the landed Parquet files."""

import csv
import io
import statistics
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq

from amc_pipeline_tests.constants import INSTANCE
from amc_pipeline_tests.e2e.stack import Stack

LOCATION = "amc_pipeline"
REPOSITORY = "__repository__"
#: Lines for the terminal summary (see conftest.pytest_terminal_summary).
REPORT: list[str] = []

METADATA_FIELDS = """
    label
    ... on TextMetadataEntry { text }
    ... on PathMetadataEntry { path }
    ... on MarkdownMetadataEntry { mdStr }
    ... on JsonMetadataEntry { jsonString }
    ... on UrlMetadataEntry { url }
    ... on IntMetadataEntry { intRepr }
    ... on FloatMetadataEntry { floatValue }
    ... on TableMetadataEntry { table { records } }
"""


def asset_path(workflow: str) -> list[str]:
    return ["amc", workflow]


# ---------------------------------------------------------------------- Dagster GraphQL
def partition_keys(stack: Stack, workflow: str) -> list[str]:
    data = stack.graphql("query($k: [AssetKeyInput!]) { assetNodes(assetKeys: $k) { partitionKeys } }",
                         {"k": [{"path": asset_path(workflow)}]})
    return data["assetNodes"][0]["partitionKeys"]


def launch_backfill(stack: Stack, workflows: list[str], partitions: list[str]) -> str:
    data = stack.graphql(
        """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
            __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
            ... on UnauthorizedError { message } ... on PartitionSetNotFoundError { message } } }""",
        {"p": {"partitionNames": partitions, "assetSelection": [{"path": asset_path(w)} for w in workflows],
               "title": "e2e backfill"}},
    )
    result = data["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return result["backfillId"]


def launch_partition_run(stack: Stack, workflow: str, partition: str) -> str:
    data = stack.graphql(
        """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
            ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
            ... on RunConfigValidationInvalid { errors { message } } } }""",
        {"p": {"selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY,
                            "jobName": f"amc_{workflow}_job"},
               "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]}}},
    )
    result = data["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def materializations(stack: Stack, workflow: str, partitions: list[str]) -> list[dict[str, Any]]:
    """Every materialization event of the workflow's asset in these partitions (newest first)."""
    data = stack.graphql(
        f"""query($k: [AssetKeyInput!], $p: [String!]) {{ assetNodes(assetKeys: $k) {{
            assetMaterializations(partitions: $p) {{ partition runId timestamp
                metadataEntries {{ {METADATA_FIELDS} }} }} }} }}""",
        {"k": [{"path": asset_path(workflow)}], "p": partitions},
    )
    return data["assetNodes"][0]["assetMaterializations"]


def metadata(event: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for entry in event["metadataEntries"]:
        values = [v for k, v in entry.items() if k != "label"]
        out[entry["label"]] = values[0] if values else None
    return out


def check_executions(stack: Stack, workflow: str, check: str, limit: int = 50) -> list[dict[str, Any]]:
    data = stack.graphql(
        f"""query($k: AssetKeyInput!, $c: String!, $n: Int!) {{
            assetCheckExecutions(assetKey: $k, checkName: $c, limit: $n) {{ status partition timestamp
                evaluation {{ timestamp success severity description partition
                    metadataEntries {{ {METADATA_FIELDS} }} }}
            }} }}""",
        {"k": {"path": asset_path(workflow)}, "c": check, "n": limit},
    )
    return data["assetCheckExecutions"]


def all_runs(stack: Stack) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    cursor = None
    while True:
        data = stack.graphql(
            """query($c: String) { runsOrError(limit: 100, cursor: $c) { ... on Runs {
                results { runId jobName status tags { key value } } } } }""", {"c": cursor})
        page = data["runsOrError"]["results"]
        runs += page
        if len(page) < 100:
            return runs
        cursor = page[-1]["runId"]


def run_events_text(stack: Stack, run_id: str) -> str:
    """Every event of the run, as the JSON GraphQL returns (messages, metadata, errors)."""
    chunks = []
    cursor = None
    while True:
        data = stack.graphql(
            f"""query($r: ID!, $c: String) {{ logsForRun(runId: $r, afterCursor: $c, limit: 500) {{
                __typename ... on EventConnection {{ cursor hasMore events {{ __typename
                    ... on MessageEvent {{ message level stepKey }}
                    ... on MaterializationEvent {{ partition metadataEntries {{ {METADATA_FIELDS} }} }}
                    ... on ObservationEvent {{ partition metadataEntries {{ {METADATA_FIELDS} }} }}
                    ... on AssetCheckEvaluationEvent {{ evaluation {{ description
                        metadataEntries {{ {METADATA_FIELDS} }} }} }}
                    ... on ExecutionStepFailureEvent {{ error {{ message stack causes {{ message stack }} }} }}
                    ... on RunFailureEvent {{ error {{ message stack }} }}
                    ... on EngineEvent {{ error {{ message stack }} metadataEntries {{ {METADATA_FIELDS} }} }}
                    ... on LogMessageEvent {{ message }}
                }} }} ... on PythonError {{ message }} }} }}""",
            {"r": run_id, "c": cursor},
        )
        conn = data["logsForRun"]
        assert conn["__typename"] == "EventConnection", conn
        chunks.append(repr(conn["events"]))
        if not conn["hasMore"]:
            return "\n".join(chunks)
        cursor = conn["cursor"]


# ---------------------------------------------------------------------- simulator and AMC
def sim_executions(stack: Stack) -> list[dict[str, Any]]:
    return stack.sim_get("/_simulator/executions")


def sim_workflow(record: dict[str, Any]) -> str:
    return record["workflowId"].split("-", 1)[0]


def sim_window(record: dict[str, Any]) -> str:
    return str(record.get("timeWindowStart", ""))[:10]


def amc_headers(stack: Stack, token: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Amazon-Advertising-API-ClientId": stack.credentials["client_id"],
        "Amazon-Advertising-API-AdvertiserId": INSTANCE["advertiser_id"],
        "Amazon-Advertising-API-MarketplaceId": INSTANCE["marketplace_id"],
    }


def fetch_result_csvs(stack: Stack, execution_id: str) -> list[str]:
    """The execution's result files, fetched like a client would: token, downloadUrls, GET each URL."""
    creds = stack.credentials
    with httpx.Client(timeout=60) as client:
        token = client.post(stack.sim_url + "/auth/o2/token", data={
            "grant_type": "refresh_token", "client_id": creds["client_id"],
            "client_secret": creds["client_secret"], "refresh_token": creds["refresh_token"],
        })
        token.raise_for_status()
        headers = amc_headers(stack, token.json()["access_token"])
        urls = client.get(f"{stack.sim_url}/amc/reporting/{INSTANCE['instance_id']}/workflowExecutions/"
                          f"{execution_id}/downloadUrls", headers=headers)
        urls.raise_for_status()
        files = []
        for url in urls.json()["downloadUrls"]:
            response = client.get(url)
            response.raise_for_status()
            files.append(response.content.decode("utf-8"))
        return files


# ---------------------------------------------------------------------- Parquet vs CSV
def csv_rows(text: str) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(text, newline="")))
    return rows[0], rows[1:]


def _same(parquet_value: Any, csv_value: str) -> bool:
    if parquet_value is None:
        return csv_value == ""
    if isinstance(parquet_value, bool):
        return str(parquet_value).lower() == csv_value.lower()
    if isinstance(parquet_value, int):
        return parquet_value == int(csv_value)
    if isinstance(parquet_value, float):
        return parquet_value == float(csv_value)
    if isinstance(parquet_value, datetime):
        return parquet_value == datetime.fromisoformat(csv_value.replace(" ", "T").removesuffix("Z"))
    if isinstance(parquet_value, date):
        return parquet_value == date.fromisoformat(csv_value)
    return parquet_value == csv_value


def compare_parquet_with_csvs(folder: Path, csv_texts: list[str]) -> int:
    """Assert the partition folder's part files hold exactly the CSVs' rows, in order; return the count."""
    parts = sorted(folder.glob("part-*.parquet"))
    assert parts, f"no Parquet parts in {folder}"
    parquet_rows: list[dict[str, Any]] = []
    for part in parts:
        parquet_rows += pq.read_table(part).to_pylist()
    expected: list[dict[str, str]] = []
    for text in csv_texts:
        header, rows = csv_rows(text)
        expected += [dict(zip(header, row, strict=True)) for row in rows]
    assert len(parquet_rows) == len(expected), f"{folder}: {len(parquet_rows)} rows in Parquet, CSV has {len(expected)}"
    for index, (got, want) in enumerate(zip(parquet_rows, expected, strict=True)):
        assert set(want) <= set(got), f"{folder}: columns {sorted(got)} lack {sorted(set(want) - set(got))}"
        for column, value in want.items():
            assert _same(got[column], value), f"{folder} row {index} {column}: Parquet {got[column]!r} != CSV {value!r}"
    return len(expected)


# ---------------------------------------------------------------------- latency
@dataclass
class Latency:
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def parse_iso(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
