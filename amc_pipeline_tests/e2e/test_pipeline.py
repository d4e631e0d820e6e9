"""The whole pipeline as a user runs it: simulator + dagster-webserver + dagster-daemon as subprocesses,
driven only through Dagster's GraphQL API, the AMC API and the simulator's admin API.

One stack and one flow are shared by the module (starting Dagster costs most of the time budget):
a backfill of 4 daily partitions of two workflows, with the daemon SIGKILLed and restarted in the
middle; one run each of a workflow whose SQL fails at create and one that stays PENDING forever.
"""

import contextlib
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import pyarrow.parquet as pq
import pytest
from sqlalchemy import MetaData, create_engine

from amc_pipeline.store.store import ExecutionStore
from amc_pipeline_tests.e2e.conftest import running_stack
from amc_pipeline_tests.e2e.flow import (
    REPORT,
    all_runs,
    asset_path,
    check_executions,
    compare_parquet_with_csvs,
    fetch_result_csvs,
    launch_backfill,
    launch_partition_run,
    materializations,
    metadata,
    parse_iso,
    partition_keys,
    run_events_text,
    sim_executions,
    sim_window,
    sim_workflow,
)
from amc_pipeline_tests.e2e.stack import FAST_MONITOR, Stack, wait_until
from amc_pipeline_tests.notify.receiver import Receiver

pytestmark = pytest.mark.e2e

LANDED = ["daily_reach", "ad_spend"]
FAILING = "broken_attribution"
#: The secret part of the e2e webhook URL (checked for leaks like the other secrets).
WEBHOOK_TOKEN = "e2eWebhookSecretToken0123456789"
STUCK = "audience_overlap"
CLIENT_SECRET = "sekret-CLIENT-3f9a"
REFRESH_TOKEN = "sekret-REFRESH-77b1"
START = (datetime.now(UTC) - timedelta(days=14)).date().isoformat()
WORKFLOWS = [
    {"name": "daily_reach", "start_date": START,
     "sql": "SELECT advertiser, campaign, SUM(impressions) AS impressions FROM dsp_impressions GROUP BY 1, 2"},
    {"name": "ad_spend", "start_date": START,
     "sql": "SELECT campaign, SUM(total_cost) AS spend FROM sponsored_ads_traffic GROUP BY 1"},
    {"name": FAILING, "start_date": START, "sql": "SELECT campaign FROM no_such_table"},
    {"name": STUCK, "start_date": START, "stuck_pending_minutes": 1,
     "sql": "SELECT segment_a, COUNT(DISTINCT user_id) AS users FROM dsp_impressions GROUP BY 1"},
]
SIM_CONFIG = {
    "client_id": "amzn1.application-oa2-client.e2e",
    "client_secret": CLIENT_SECRET,
    "refresh_token": REFRESH_TOKEN,
    "pending_seconds": 2,
    "running_seconds": 3,
    "scenarios": {FAILING: {"kind": "sql_error"}, STUCK: {"kind": "stuck_pending"}},
}


@dataclass
class Flow:
    stack: Stack
    partitions: list[str]
    single_partition: str
    #: state when the daemon was killed: partitions already landed, executions at the simulator
    landed_at_kill: int = 0
    sim_at_kill: int = 0
    mats: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    receiver: Receiver | None = None


def _landed(stack: Stack, partitions: list[str]) -> dict[str, list[dict[str, Any]]]:
    return {w: materializations(stack, w, partitions) for w in LANDED}


def _count(mats: dict[str, list[dict[str, Any]]]) -> int:
    return sum(len({m["partition"] for m in events}) for events in mats.values())


@pytest.fixture(scope="module")
def flow(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("e2e-stack")
    # The daemon starts after the backfill is launched, so the backfill daemon's first (immediate)
    # iteration picks it up instead of its next one 30 s later.
    receiver = Receiver().__enter__()
    request.addfinalizer(receiver.__exit__)
    notifications = {"dagster_ui_url": "http://127.0.0.1:3000", "targets": [
        {"name": "ops", "kind": "webhook", "url_env": "AMC_E2E_WEBHOOK_URL", "events": ["failed"]}]}
    with running_stack(request, root, daemon=False, workflows=WORKFLOWS, sim_config=SIM_CONFIG,
                       notifications=notifications,
                       extra_env={"AMC_E2E_WEBHOOK_URL": receiver.url(WEBHOOK_TOKEN)}) as stack:
        keys = partition_keys(stack, "daily_reach")
        partitions, newest = keys[-4:], keys[-1]
        launch_partition_run(stack, STUCK, newest)
        launch_partition_run(stack, FAILING, newest)
        launch_backfill(stack, LANDED, partitions)
        stack.start_daemon()
        result = Flow(stack=stack, partitions=partitions, single_partition=newest, receiver=receiver)

        # Kill when the first partition has landed: AMC executions are submitted, landing runs in flight.
        wait_until("the first backfilled partition to land", lambda: _count(_landed(stack, partitions)) >= 1,
                   timeout=150, interval=0.5, on_timeout=stack.dump_logs)
        result.landed_at_kill = _count(_landed(stack, partitions))
        result.sim_at_kill = len([e for e in sim_executions(stack) if sim_workflow(e) in LANDED])
        stack.kill_daemon()
        time.sleep(1)
        stack.start_daemon()
        expected = len(LANDED) * len(partitions)
        result.mats = wait_until(
            f"{expected} landed partitions",
            lambda: (m := _landed(stack, partitions)) and _count(m) == expected and m,
            timeout=240, interval=2, on_timeout=stack.dump_logs,
        )
        yield result


def test_backfill_lands_every_partition_with_the_rows_amc_served(flow: Flow):
    """Every backfilled partition has a materialization whose Parquet files hold exactly the rows the
    simulator serves for that execution (fetched independently through the AMC API)."""
    stack = flow.stack
    total = 0
    for workflow in LANDED:
        events = flow.mats[workflow]
        assert sorted({m["partition"] for m in events}) == sorted(flow.partitions)
        for event in events:
            meta = metadata(event)
            execution_id = meta["amc/execution_id"]
            assert execution_id, meta
            folder = stack.data_dir / "results" / workflow / f"window_start={event['partition']}"
            assert Path(url2pathname(urlparse(meta["dagster/uri"]).path)).resolve() == folder.resolve()
            rows = compare_parquet_with_csvs(folder, fetch_result_csvs(stack, execution_id))
            assert int(meta["dagster/row_count"]) == rows
            total += rows
    assert total > 0
    REPORT.append(f"landed {len(LANDED) * len(flow.partitions)} partitions, {total} rows, Parquet == AMC CSVs")


def test_daemon_sigkill_mid_backfill_loses_nothing_and_duplicates_nothing(flow: Flow):
    """The daemon died with the backfill in flight: after the restart every partition landed once, and
    AMC saw exactly one execution per (workflow, window)."""
    expected = len(LANDED) * len(flow.partitions)
    assert flow.landed_at_kill < expected, "the daemon was killed after the backfill had finished"
    assert flow.stack.daemon_starts == 2
    executions = [e for e in sim_executions(flow.stack) if sim_workflow(e) in LANDED]
    per_window: dict[tuple[str, str], int] = {}
    for execution in executions:
        key = (sim_workflow(execution), sim_window(execution))
        per_window[key] = per_window.get(key, 0) + 1
    assert per_window == {(w, p): 1 for w in LANDED for p in flow.partitions}, per_window
    assert all(e["status"] == "SUCCEEDED" for e in executions)
    for workflow in LANDED:
        partitions = [m["partition"] for m in flow.mats[workflow]]
        assert sorted(partitions) == sorted(flow.partitions), f"{workflow}: materializations {partitions}"
        ids = {metadata(m)["amc/execution_id"] for m in flow.mats[workflow]}
        assert ids == {e["workflowExecutionId"] for e in executions if sim_workflow(e) == workflow}
    REPORT.append(f"daemon SIGKILLed with {flow.landed_at_kill}/{expected} landed and {flow.sim_at_kill} "
                  f"executions at AMC; after restart {expected}/{expected} landed, {len(executions)} executions")


def test_partition_checks_pass_for_landed_partitions(flow: Flow):
    for workflow in LANDED:
        for check in ("has_rows", "schema_matches_previous"):
            # newest first; runs that only enqueued planned the check but never evaluated it (SKIPPED)
            evaluated: dict[str, dict[str, Any]] = {}
            for execution in check_executions(flow.stack, workflow, check):
                if execution["evaluation"] is not None:
                    evaluated.setdefault(execution["partition"], execution)
            assert set(evaluated) >= set(flow.partitions), (workflow, check, sorted(evaluated))
            for partition in flow.partitions:
                assert evaluated[partition]["status"] == "SUCCEEDED", (workflow, check, evaluated[partition])
                assert evaluated[partition]["evaluation"]["success"], (workflow, check, evaluated[partition])


def _latest_evaluation(stack: Stack, workflow: str, check: str) -> dict[str, Any] | None:
    for execution in check_executions(stack, workflow, check, limit=5):
        if execution["evaluation"] is not None:
            return execution["evaluation"]
    return None


def test_failed_and_stuck_checks_report_the_broken_workflows(flow: Flow):
    """`no_failed_executions` is red with AMC's reason on the SQL-error workflow; `no_stuck_executions`
    warns on the workflow stuck PENDING past its 1-minute limit; both are green on a healthy one."""
    stack = flow.stack

    def failed_reported():
        evaluation = _latest_evaluation(stack, FAILING, "no_failed_executions")
        return evaluation if evaluation and not evaluation["success"] else None

    failed = wait_until("no_failed_executions to fail on the SQL-error workflow", failed_reported, timeout=90,
                        interval=2)
    assert failed["severity"] == "ERROR"
    assert flow.single_partition in failed["description"] and "QUERY" in failed["description"], failed
    assert metadata(failed)["failed_count"] == "1"

    # Latency: the store recorded the failure, then the checks sensor (no longer a fixed 5-minute
    # timer) re-evaluated the check within one sensor interval plus the run's own start-up.
    store = ExecutionStore(stack.store_url or f"sqlite:///{stack.data_dir / 'amc_pipeline.db'}", upgrade=False)
    try:
        recorded = store.get_live(FAILING, flow.single_partition).attempt.completed_at.timestamp()
    finally:
        store.close()
    latency = float(failed["timestamp"]) - recorded
    bound = FAST_MONITOR["sensor_interval_seconds"] + 15
    REPORT.append(f"failure recorded -> no_failed_executions ERROR: {latency:.1f} s (bound {bound} s)")
    assert latency <= bound, latency

    # The partition bar: the failed window shows Failed (a failing report run), not Missing.
    def partition_failed():
        data = stack.graphql(
            """query($k: AssetKeyInput!) { assetNodeOrError(assetKey: $k) { ... on AssetNode {
                assetPartitionStatuses { ... on TimePartitionStatuses { ranges { status startKey endKey } } } } } }""",
            {"k": {"path": asset_path(FAILING)}})
        ranges = data["assetNodeOrError"]["assetPartitionStatuses"]["ranges"]
        return [r for r in ranges if r["status"] == "FAILED" and r["startKey"] <= flow.single_partition
                <= r["endKey"]]

    wait_until("the failed window to show as a Failed partition", partition_failed, timeout=60, interval=2)

    # One notification for the failure (the daemon was restarted meanwhile: still one).
    def notified():
        return [p for p in flow.receiver.delivered() if p.body.get("event") == "failed"]

    [message] = wait_until("the failure notification", notified, timeout=60, interval=2)
    assert message.body["workflow"] == FAILING and message.body["window"] == flow.single_partition
    assert "Unable to compile" in str(message.body)
    time.sleep(2 * FAST_MONITOR["sensor_interval_seconds"])
    assert len(notified()) == 1

    def stuck_reported():
        evaluation = _latest_evaluation(stack, STUCK, "no_stuck_executions")
        return evaluation if evaluation and not evaluation["success"] else None

    stuck = wait_until("no_stuck_executions to warn on the stuck workflow", stuck_reported, timeout=150,
                       interval=2)
    assert stuck["severity"] == "WARN"
    assert metadata(stuck)["stuck_count"] == "1"
    assert flow.single_partition in metadata(stuck)["stuck"] and "PENDING" in metadata(stuck)["stuck"]

    for check in ("no_failed_executions", "no_stuck_executions"):
        healthy = _latest_evaluation(stack, "daily_reach", check)
        assert healthy is not None and healthy["success"], (check, healthy)
    assert _latest_evaluation(stack, FAILING, "no_stuck_executions")["success"]
    assert _latest_evaluation(stack, STUCK, "no_failed_executions")["success"]


def test_report_median_succeeded_to_materialization_latency(flow: Flow):
    """Median time from AMC's SUCCEEDED (the simulator's record) to the materialization event."""
    records = {e["workflowExecutionId"]: e for e in sim_executions(flow.stack)}
    samples = []
    for workflow in LANDED:
        for event in flow.mats[workflow]:
            record = records[metadata(event)["amc/execution_id"]]
            assert record["status"] == "SUCCEEDED"
            succeeded = parse_iso(record["lastUpdatedTime"])
            samples.append(int(event["timestamp"]) / 1000 - succeeded)
    samples.sort()
    median = statistics.median(samples)
    assert len(samples) == len(LANDED) * len(flow.partitions)
    assert all(s > -1.5 for s in samples), samples  # second-resolution AMC timestamps; never before SUCCEEDED
    REPORT.append(f"AMC SUCCEEDED -> materialization: median {median:.1f} s over {len(samples)} partitions "
                  f"(min {samples[0]:.1f} s, max {samples[-1]:.1f} s; includes the daemon restart)")


BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]


def _dismiss_welcome(page) -> None:
    """The first visit shows a 'Join the Dagster community' dialog over the page; on a loaded machine
    it can open after the page's content, so any dialog backdrop still up is closed (Skip, else Escape)
    until none is left."""
    with contextlib.suppress(Exception):  # no dialog this time
        page.get_by_role("button", name="Skip").click(timeout=5_000)
    backdrop = page.locator(".bp5-overlay-backdrop")
    for _ in range(5):
        if not backdrop.count() or not backdrop.first.is_visible():
            return
        with contextlib.suppress(Exception):
            page.get_by_role("button", name="Skip").click(timeout=2_000)
            continue
        page.keyboard.press("Escape")
        page.wait_for_timeout(500)


def test_ui_asset_page_shows_partitions_and_checks(flow: Flow, tmp_path: Path):
    """The Dagster UI's asset page of a workflow: the Partitions tab counts 4 materialized partitions and,
    with 'Missing' filtered out, lists exactly the backfilled ones; the Checks tab shows all four checks
    Succeeded. The SQL-error workflow's Checks tab shows no_failed_executions Failed."""
    from playwright.sync_api import expect, sync_playwright

    url = f"{flow.stack.web_url}/assets/amc/daily_reach"
    all_keys = partition_keys(flow.stack, "daily_reach")
    missing = len(all_keys) - len(flow.partitions)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(url + "?view=partitions", wait_until="domcontentloaded")
            _dismiss_welcome(page)
            expect(page.get_by_text(f"Materialized ({len(flow.partitions)})", exact=True)).to_be_visible(
                timeout=60_000)
            expect(page.get_by_text(f"Missing ({missing})", exact=True)).to_be_visible()
            _dismiss_welcome(page)  # again: the dialog may have opened after the content
            page.get_by_text(f"Missing ({missing})", exact=True).click()
            expect(page.get_by_role("checkbox", name=f"Missing ({missing})")).not_to_be_checked()
            for partition in flow.partitions:
                expect(page.get_by_text(partition, exact=True).first).to_be_visible(timeout=30_000)
            expect(page.get_by_text(all_keys[1], exact=True)).to_have_count(0)  # [0] is the range label
            partitions_shot = tmp_path / "asset-partitions.png"
            page.screenshot(path=str(partitions_shot), full_page=True)
            page.goto(url + "?view=checks", wait_until="domcontentloaded")
            expect(page.get_by_text("Checks (4)", exact=True)).to_be_visible(timeout=30_000)
            for check in ("has_rows", "schema_matches_previous", "no_failed_executions", "no_stuck_executions"):
                expect(page.get_by_text(check, exact=True).first).to_be_visible(timeout=30_000)
            _settle(page, url + "?view=checks", {"Succeeded": 4})
            checks_shot = tmp_path / "asset-checks.png"
            page.screenshot(path=str(checks_shot), full_page=True)
            # and a red one: the SQL-error workflow's failed-executions check
            page.goto(f"{flow.stack.web_url}/assets/amc/{FAILING}?view=checks", wait_until="domcontentloaded")
            expect(page.get_by_text("no_failed_executions", exact=True).first).to_be_visible(timeout=30_000)
            # no_failed_executions Failed, no_stuck_executions Succeeded
            _settle(page, f"{flow.stack.web_url}/assets/amc/{FAILING}?view=checks", {"Failed": 1, "Succeeded": 1})
            failed_shot = tmp_path / "failing-asset-checks.png"
            page.screenshot(path=str(failed_shot), full_page=True)
        finally:
            browser.close()
    shots = f"{partitions_shot} {checks_shot} {failed_shot}"
    REPORT.append(f"screenshots: {shots}")
    print(f"screenshots: {shots}")


def _settle(page, url: str, counts: dict[str, int], timeout: float = 90.0) -> None:
    """Reload until the page shows these status counts. The checks sensor re-evaluates every few
    seconds, and while its run executes a check shows as in progress rather than its last result."""
    deadline = time.monotonic() + timeout
    while True:
        seen = {text: page.get_by_text(text, exact=True).count() for text in counts}
        if seen == counts:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{url}: expected {counts}, the page shows {seen}")
        time.sleep(2)
        page.goto(url, wait_until="domcontentloaded")
        page.get_by_text("Checks (", exact=False).first.wait_for(timeout=30_000)
        time.sleep(1)


def _needles(stack: Stack) -> dict[str, str]:
    issued = stack.sim_get("/_simulator/tokens")
    needles = {"client secret": CLIENT_SECRET, "refresh token": REFRESH_TOKEN, "webhook URL": WEBHOOK_TOKEN}
    assert issued["access_tokens"] and issued["url_signatures"], issued
    for i, token in enumerate(issued["access_tokens"]):
        needles[f"access token {i}"] = token.removeprefix("Atza|")  # the random part, in any encoding
    for i, signature in enumerate(issued["url_signatures"]):
        needles[f"URL signature {i}"] = signature
    return needles


def _leaks(haystacks: dict[str, str | bytes], needles: dict[str, str]) -> list[str]:
    found = []
    for where, text in haystacks.items():
        for what, needle in needles.items():
            if (needle.encode() if isinstance(text, bytes) else needle) in text:
                found.append(f"{what} in {where}")
    return found


def test_no_secret_leaks_into_logs_event_log_store_or_parquet(flow: Flow):
    """None of the client secret, refresh token, issued access tokens or pre-signed URL signatures
    appears in the process logs, Dagster's event log (GraphQL, every run), the execution store (every
    table), the Parquet metadata, or any file under DAGSTER_HOME or the data dir."""
    stack = flow.stack
    needles = _needles(stack)
    haystacks: dict[str, str | bytes] = dict(stack.log_texts())
    runs = all_runs(stack)
    assert len(runs) >= 10
    for run in runs:
        haystacks[f"events of run {run['runId']} ({run['jobName']})"] = run_events_text(stack, run["runId"])
        haystacks[f"tags of run {run['runId']}"] = repr(run["tags"])
    engine = create_engine(f"sqlite:///{stack.data_dir / 'amc_pipeline.db'}")
    try:
        tables = MetaData()
        tables.reflect(engine)
        assert "amc_executions" in tables.tables
        with engine.connect() as conn:
            for name, table in tables.tables.items():
                haystacks[f"store table {name}"] = repr(conn.execute(table.select()).all())
    finally:
        engine.dispose()
    parts = sorted((stack.data_dir / "results").rglob("*.parquet"))
    assert len(parts) >= len(LANDED) * len(flow.partitions)
    for part in parts:
        meta = pq.read_metadata(part)
        haystacks[f"Parquet metadata {part.name}"] = repr(meta.metadata) + repr(meta.schema) + repr(meta.to_dict())
    for folder in (stack.dagster_home, stack.data_dir):
        for path in folder.rglob("*"):
            if path.is_file():
                haystacks[f"file {path}"] = path.read_bytes()
    leaks = _leaks(haystacks, needles)
    assert not leaks, "secrets leaked:\n" + "\n".join(leaks[:30])
    REPORT.append(f"secrets: {len(needles)} values (client secret, refresh token, "
                  f"{sum(k.startswith('access') for k in needles)} access tokens, "
                  f"{sum(k.startswith('URL') for k in needles)} URL signatures) absent from "
                  f"{len(haystacks)} logs/event logs/tables/files")
