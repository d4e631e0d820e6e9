"""Benchmark an agency-sized deployment: 3 accounts x 50 instances x 10 workflows, 30 days of windows each.

    .venv/bin/python benchmarks/many_instances.py [--accounts 3] [--instances 50] [--workflows 10] [--days 30]
        [--latency 0.02] [--ticks 20] [--no-webserver]

Every workflow is fanned out over every instance (`instances: all`), so each has accounts x instances x
days partitions (4,500 with the defaults, 45,000 in all). The simulator runs in a child process (as in
poll_scale.py) and knows every account and instance. Setup, not measured: the store (SQLite, temp dir)
gets every window of the last `days - 1` days landed, one active (RUNNING) window per workflow and
instance on the newest day (1,500, also created in the simulator's state, so a poll pass sees them),
300 finished windows waiting to land and one QUEUED backfill window per workflow and instance. The
accounts' parallel limit is raised to hold 1,500 active (AMC's 200 per account cannot): a benchmark
of polling many, said here so nobody mistakes it for AMC's limit.

Measured:
- definitions load: a fresh Python process imports `amc_pipeline.definitions` on the generated YAML and
  resolves the repository (what a code server does), wall seconds;
- the monitor sensor's and the landing sensor's tick: `evaluate_tick` of the real sensors from
  `build_definitions`, `--ticks` times each, p50 and p95;
- one monitor poll pass (`poll_due`) over the 1,500 active executions: AMC requests (the simulator's
  own count, token requests included) and wall time, against the floor: one list page per instance
  (a page answers 100 statuses; each instance has 10 active) plus one token per account, and the wall
  time of exactly those requests made bare (no store, no parsing beyond the client's) at the same
  concurrency;
- the webserver's asset-graph query (the GraphQL the UI's asset graph asks), p50 of 5 after a warm-up.

Targets (issue 12): definitions < 10 s, sensor ticks < 1 s (p95), pass requests <= 2 x floor. The
GraphQL figure has no target in the issue; it is printed as a figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from poll_scale import RemoteSimulator  # noqa: E402 - the sibling benchmark's simulator child

SQL = "SELECT campaign, SUM(impressions) AS impressions FROM sponsored_ads_traffic GROUP BY 1"
MARKETS = ("ATVPDKIKX0DER", "A1F83G8C2ARO7P", "A2EUQ1WTGCTBG2")
LANDABLE = 300


def names(accounts: int, instances: int, workflows: int) -> tuple[list[str], dict[str, list[str]], list[str]]:
    account_names = [f"agency{a:02d}" for a in range(accounts)]
    per_account = {a: [f"amc{a}i{i:03d}" for i in range(instances)] for a in account_names}
    workflow_names = [f"report_{w:02d}" for w in range(workflows)]
    return account_names, per_account, workflow_names


def config_data(account_names, per_account, workflow_names, start: date, active_limit: int) -> dict:
    return {
        "accounts": [{"name": a, "client_id_env": f"BENCH_{a.upper()}_ID",
                      "client_secret_env": f"BENCH_{a.upper()}_SECRET",
                      "refresh_token_env": f"BENCH_{a.upper()}_REFRESH",
                      "max_active_executions": active_limit} for a in account_names],
        "instances": [{"instance_id": iid, "advertiser_id": f"ENTITY{n:06d}", "marketplace_id": MARKETS[n % 3],
                       "account": a, "tags": {"region": "eu" if n % 3 else "na"}}
                      for a in account_names for n, iid in enumerate(per_account[a])],
        "workflows": [{"name": w, "instances": "all", "sql": SQL, "partitions": "daily",
                       "start_date": start.isoformat(), "data_lag_days": 0} for w in workflow_names],
    }


def credentials(account: str) -> tuple[str, str, str]:
    return (f"amzn1.application-oa2-client.{account}", f"secret-{account}", f"Atzr|refresh-{account}")


def seed(store, sim: RemoteSimulator, config, days: list[date]) -> dict[str, int]:
    """Bulk rows straight into the store's tables (the store API would take minutes for 45,000 windows)."""
    from sqlalchemy import insert, update

    from amc_pipeline.partition_keys import fan_out_key
    from amc_pipeline.store.tables import amc_execution_attempts as A
    from amc_pipeline.store.tables import amc_executions as E

    now = datetime.now(UTC)
    executions, attempts, specs, active_ids = [], [], [], []
    counts = {"landed": 0, "active": 0, "landable": 0, "queued": 0}
    next_id = 1
    for workflow in config.workflows:
        for iid in workflow.instance_ids:
            for day in days:
                start = datetime(day.year, day.month, day.day, tzinfo=UTC)
                newest = day == days[-1]
                landable = not newest and counts["landable"] < LANDABLE and day == days[-2]
                status = "RUNNING" if newest else "SUCCESS"
                token = uuid.uuid4().hex
                executions.append({
                    "id": next_id, "workflow": workflow.name, "instance_id": iid,
                    "partition_key": fan_out_key(day.isoformat(), iid), "window_start": start,
                    "window_end": start + timedelta(days=1), "requested_at": start + timedelta(days=1), "live": True,
                    "landed_at": None if newest or landable else now, "rows": None if newest or landable else 100,
                    "bytes": None if newest or landable else 4096, "uri": None, "land_attempts": 0 if newest else 1})
                attempts.append({
                    "id": next_id, "execution_id": next_id, "attempt": 1, "status": status, "client_token": token,
                    "amc_execution_id": None if newest else f"hist-{next_id}", "amc_status":
                    "RUNNING" if newest else "SUCCEEDED", "created_at": start + timedelta(days=1),
                    "submitted_at": now - timedelta(minutes=30) if newest else start + timedelta(days=1),
                    "status_changed_at": now - timedelta(minutes=29) if newest else start + timedelta(days=1, hours=1),
                    "completed_at": None if newest else start + timedelta(days=1, hours=1),
                    "next_check_at": now - timedelta(seconds=1) if newest else None,
                    "execution_time_seconds": None if newest else 1800.0, "error_count": 0, "retry_count": 0})
                if newest:
                    fields = {"workflowId": f"{workflow.name}-{token}", "workflowExecutionTimeoutSeconds": 86400,
                              "parameterValues": {}, "ignoreDataGaps": False, "disableAggregationControls": False,
                              "timeWindowType": "EXPLICIT", "timeWindowStart": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                              "timeWindowEnd": (start + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                              "timeWindowTimeZone": "UTC"}
                    specs.append((iid, fields, SQL, time.time() - 1800))
                    active_ids.append(next_id)
                counts["active" if newest else ("landable" if landable else "landed")] += 1
                next_id += 1
    amc_ids = sim.call("populate", specs)
    by_id = dict(zip(active_ids, amc_ids, strict=True))
    for row in attempts:
        if row["id"] in by_id:
            row["amc_execution_id"] = by_id[row["id"]]
    # A backfill waiting behind the active ones: one window per workflow and instance, due later.
    queued_day = days[0] - timedelta(days=1)
    for workflow in config.workflows:
        for iid in workflow.instance_ids:
            start = datetime(queued_day.year, queued_day.month, queued_day.day, tzinfo=UTC)
            executions.append({"id": next_id, "workflow": workflow.name, "instance_id": iid,
                               "partition_key": fan_out_key(queued_day.isoformat(), iid), "window_start": start,
                               "window_end": start + timedelta(days=1), "requested_at": now, "live": True,
                               "land_attempts": 0, "landed_at": None, "rows": None, "bytes": None, "uri": None})
            attempts.append({"id": next_id, "execution_id": next_id, "attempt": 1, "status": "QUEUED",
                             "client_token": uuid.uuid4().hex, "amc_execution_id": None, "amc_status": None,
                             "created_at": now, "submitted_at": None, "status_changed_at": now, "completed_at": None,
                             "next_check_at": now + timedelta(minutes=5), "execution_time_seconds": None,
                             "error_count": 0, "retry_count": 0})
            counts["queued"] += 1
            next_id += 1
    with store.engine.begin() as conn:
        for chunk in range(0, len(executions), 5000):
            conn.execute(insert(E), executions[chunk:chunk + 5000])
        for chunk in range(0, len(attempts), 5000):
            conn.execute(insert(A), attempts[chunk:chunk + 5000])
        conn.execute(update(E).values(current_attempt_id=E.c.id))
        conn.execute(update(E).where(E.c.landed_at.is_not(None)).values(landed_attempt_id=E.c.id))
    return counts


def load_seconds(env: dict[str, str]) -> float:
    code = ("import time, warnings; warnings.simplefilter('ignore'); t = time.perf_counter(); "
            "import amc_pipeline.definitions as d; d.defs.get_repository_def(); print(time.perf_counter() - t)")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600,
                          cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"definitions failed to load:\n{done.stderr[-3000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def tick_seconds(defs, sensor_name: str, resources: dict, ticks: int) -> tuple[list[float], str]:
    import dagster as dg

    sensor = defs.resolve_sensor_def(sensor_name)
    times, what = [], ""
    with dg.instance_for_test() as instance:
        for _ in range(ticks):
            context = dg.build_sensor_context(instance=instance, repository_def=defs.get_repository_def(),
                                              resources=resources)
            t0 = time.perf_counter()
            result = sensor.evaluate_tick(context)
            times.append(time.perf_counter() - t0)
            what = (f"{len(result.run_requests)} run request(s)" if result.run_requests
                    else f"skip: {result.skip_message}")
    return times, what


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


ASSET_GRAPH_QUERY = """{ assetNodes { id assetKey { path } groupName isPartitioned isMaterializable
    partitionDefinition { description type dimensionTypes { name type } } dependencyKeys { path }
    dependedByKeys { path } kinds owners { ... on TeamAssetOwner { team } ... on UserAssetOwner { email } } } }"""


def graphql_seconds(env: dict[str, str], root: Path) -> tuple[float, int]:
    """p50 of 5 asset-graph queries against a real dagster-webserver on this config (after one warm-up)."""
    import httpx

    port = free_port()
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    log = open(root / "webserver.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(Path(sys.executable).parent / "dagster-webserver"), "-h", "127.0.0.1", "-p",
                             str(port), "-m", "amc_pipeline.definitions"], cwd=REPO,
                            env={**env, "DAGSTER_HOME": str(home)}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/graphql"
        deadline = time.monotonic() + 300
        while True:
            with contextlib.suppress(httpx.HTTPError):
                body = httpx.post(url, json={"query": ASSET_GRAPH_QUERY}, timeout=120).json()
                if body.get("data", {}).get("assetNodes"):
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"webserver did not answer: {(root / 'webserver.log').read_text()[-2000:]}")
            time.sleep(1)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            body = httpx.post(url, json={"query": ASSET_GRAPH_QUERY}, timeout=120).json()
            times.append(time.perf_counter() - t0)
        return statistics.median(times), len(body["data"]["assetNodes"])
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=5)
        log.close()


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=3)
    parser.add_argument("--instances", type=int, default=50, help="per account")
    parser.add_argument("--workflows", type=int, default=10)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--latency", type=float, default=0.02, help="simulator seconds per API answer")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument("--no-webserver", action="store_true", help="skip the GraphQL figure")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")

    import yaml

    from amc_pipeline.config import parse_config
    from amc_pipeline.simulator import SimulatedAccount

    account_names, per_account, workflow_names = names(args.accounts, args.instances, args.workflows)
    today = datetime.now(UTC).date()
    days = [today - timedelta(days=args.days - i) for i in range(args.days)]
    active_per_account = args.instances * args.workflows
    data = config_data(account_names, per_account, workflow_names, days[0] - timedelta(days=1),
                       max(200, active_per_account))
    config = parse_config(data)
    sims = [SimulatedAccount(*credentials(a), instances={iid: (f"ENTITY{n:06d}", MARKETS[n % 3])
                                                         for n, iid in enumerate(per_account[a])},
                             max_active_executions=max(200, active_per_account)) for a in account_names[1:]]
    first = account_names[0]
    client_id, secret, refresh = credentials(first)
    sim = RemoteSimulator({
        "client_id": client_id, "client_secret": secret, "refresh_token": refresh,
        "instances": {iid: (f"ENTITY{n:06d}", MARKETS[n % 3]) for n, iid in enumerate(per_account[first])},
        "accounts": sims, "max_active_executions": max(200, active_per_account), "daily_quota": 100_000,
        "latency_seconds": 0.0, "pending_seconds": 1, "scenarios": {w: {"kind": "stuck_running"}
                                                                    for w in workflow_names}})
    with tempfile.TemporaryDirectory(prefix="amc-many-") as tmp:
        root = Path(tmp)
        (root / "pipeline.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        database_url = f"sqlite:///{root / 'store.db'}"
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AMC_", "DAGSTER_"))},
               "AMC_PIPELINE_CONFIG": str(root / "pipeline.yaml"), "AMC_PIPELINE_DATABASE_URL": database_url,
               "AMC_PIPELINE_DATA_DIR": str(root / "data"), "AMC_API_URL": sim.url, "AMC_TOKEN_URL": sim.token_url}
        for account in config.accounts:
            env.update(dict(zip(account.env_names, credentials(account.name), strict=True)))
        os.environ.update(env)
        try:
            run(args, config, sim, root, database_url, env)
        finally:
            sim.stop()


def run(args, config, sim: RemoteSimulator, root: Path, database_url: str, env: dict[str, str]) -> None:
    from amc_pipeline.definitions import build_definitions
    from amc_pipeline.defs.resources import AmcAccountCredentials, AmcResource, StoreResource
    from amc_pipeline.monitor.events import PassReport
    from amc_pipeline.monitor.poll import poll_due
    from amc_pipeline.store.store import ExecutionStore

    instances = len(config.instances)
    days = [datetime.now(UTC).date() - timedelta(days=args.days - i) for i in range(args.days)]
    store = ExecutionStore(database_url)
    t0 = time.perf_counter()
    counts = seed(store, sim, config, days)
    print(f"setup: {instances} instances in {len(config.accounts)} accounts, {len(config.workflows)} workflows x "
          f"{instances * args.days} partitions; store: {counts['landed']} landed, {counts['active']} active, "
          f"{counts['landable']} to land, {counts['queued']} queued ({time.perf_counter() - t0:.1f} s)")

    load = load_seconds(env)
    print(f"definitions load (fresh process, import + repository): {load:.2f} s  target < 10 s: "
          f"{verdict(load < 10)}")

    defs = build_definitions(config)
    resources = {"amc_store": StoreResource(database_url=database_url)}
    for sensor_name in ("amc_monitor_sensor", "amc_landing_sensor"):
        times, what = tick_seconds(defs, sensor_name, resources, args.ticks)
        p50, p95 = statistics.median(times), quantile(times, 0.95)
        print(f"{sensor_name} tick ({len(times)} ticks; {what}): p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms  "
              f"target p95 < 1 s: {verdict(p95 < 1)}")

    amc = AmcResource(api_url=sim.url, token_url=sim.token_url, accounts={
        a.name: AmcAccountCredentials(client_id=env[a.client_id_env], client_secret=env[a.client_secret_env],
                                      refresh_token=env[a.refresh_token_env]) for a in config.accounts})
    sim.call("latency", args.latency)
    before = sim.call("stats")
    t0 = time.perf_counter()
    report = poll_due(store, lambda: amc.get_async_client(args.concurrency), config, report=PassReport())
    wall = time.perf_counter() - t0
    after = sim.call("stats")
    requests = sum(after.get(k, 0) - before.get(k, 0) for k in ("token", "list", "get"))
    floor = instances * math.ceil(counts["active"] / instances / 100) + len(config.accounts)
    floor_wall = asyncio.run(_bare(sim, config, env, instances, args.concurrency))
    print(f"poll pass over {counts['active']} active on {instances} instances (latency {args.latency * 1000:.0f} ms, "
          f"concurrency {args.concurrency}): {requests} requests ({report.list_requests} list, {report.get_requests} "
          f"get, {after.get('token', 0) - before.get('token', 0)} token), {report.checked} checked, {wall:.2f} s; "
          f"floor {floor} requests, {floor_wall:.2f} s bare  target requests <= 2 x floor: "
          f"{verdict(requests <= 2 * floor)} ({requests / floor:.2f} x; wall {wall / floor_wall:.1f} x the bare floor)")
    sim.call("latency", 0.0)
    store.close()

    if args.no_webserver:
        print("webserver asset-graph query: skipped (--no-webserver)")
        return
    seconds, nodes = graphql_seconds(env, root)
    print(f"webserver asset-graph query ({nodes} asset nodes, {len(config.workflows)} of them fanned out over "
          f"{instances} instances): p50 {seconds * 1000:.0f} ms  (no target in the issue: a figure)")


async def _bare(sim: RemoteSimulator, config, env: dict[str, str], instances: int, concurrency: int) -> float:
    """The bare floor: one list request per instance of the first account, `concurrency` at a time, its
    token fetched first (the per-request cost does not depend on the account)."""
    from amc_pipeline.amc.async_client import AsyncAmcClient
    from amc_pipeline.amc.auth import AmcCredentials

    account = config.accounts[0]
    creds = AmcCredentials(client_id=env[account.client_id_env], client_secret=env[account.client_secret_env],
                           refresh_token=env[account.refresh_token_env], token_url=sim.token_url)
    own = config.instances_of(account.name)
    since = datetime.now(UTC) - timedelta(hours=2)
    async with AsyncAmcClient(sim.url, creds, concurrency=concurrency) as client:
        await client.list_executions_page(own[0], min_creation_time=since, limit=100)
        sem = asyncio.Semaphore(concurrency)

        async def one(index: int) -> None:
            async with sem:
                await client.list_executions_page(own[index % len(own)], min_creation_time=since, limit=100)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(instances)))
        return time.perf_counter() - t0


if __name__ == "__main__":
    main()
