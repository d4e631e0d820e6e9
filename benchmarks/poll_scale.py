"""Benchmark one monitor poll pass over many active executions on one instance. Prints figures; never asserts.

    .venv/bin/python benchmarks/poll_scale.py [--executions 10000] [--latency 0.05] [--concurrency 10]
        [--changed 100] [--spread-seconds 7200] [--validate-gets 200] [--profile]

Setup (not measured, simulator latency 0 meanwhile): the executions are written straight into the
simulator's state through its Python API (`SimulatorState.create_execution`, then the creation time is
moved into the past, spread over `--spread-seconds`, so the list path sees a realistic creation-time
spread), and matching rows go into a SQLite store in a temp dir through the store API (enqueue, then
QUEUED→PENDING→RUNNING with the AMC id and submitted_at). `--changed` of them belong to a workflow whose
AMC scenario succeeds, so the pass also records that many RUNNING→SUCCESS transitions; the rest are
still RUNNING at AMC (an unchanged check).

Measured (simulator answering every request after `--latency` seconds):
- our poll pass (`poll_due`): AMC requests (the PassReport's list/get counts and the simulator's own
  stats(), which also count the token request), wall time;
- the monitor sensor's evaluation: `store.due_summary(now)` alone, and a real Dagster evaluation of
  `amc_monitor_sensor` from `build_definitions(config)` via `dagster.build_sensor_context`, with a
  StoreResource on the temp store, while all executions are due (before the pass) and after it;
- the original approach (one GET per execution and a 0.5 s pause after each), computed as
  n × (latency + 0.5) s; `--validate-gets` sequential GETs are timed to check the per-request figure.

Floors: requests ⌈n/100⌉ (one list page answers 100 statuses); time = requests × latency / concurrency.
Targets: requests ≤ 2 × floor, wall ≤ 1.5 × floor, sensor evaluation < 1 s.
"""

import argparse
import cProfile
import math
import os
import pstats
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

INSTANCE = {"instance_id": "amcdemo001", "advertiser_id": "ENTITY1AA1AA11AAA1", "marketplace_id": "ATVPDKIKX0DER"}
STEADY = "poll_bench"  # scenario stuck_running: still RUNNING at AMC
DONE = "poll_bench_done"  # scenario succeed: SUCCEEDED at AMC by the time of the pass
SQL = "SELECT campaign, SUM(impressions) FROM sponsored_ads_traffic GROUP BY 1"
ORIGINAL_PAUSE = 0.5


def build_config(concurrency: int):
    from amc_pipeline.config import parse_config

    base = {"instance_id": INSTANCE["instance_id"], "partitions": "daily", "start_date": "1990-01-01",
            "data_lag_days": 0, "sql": SQL, "max_runtime_minutes": 1440}
    return parse_config({
        "instances": [{**INSTANCE, "max_active_executions": 1000, "daily_execution_quota": 100_000}],
        "workflows": [{**base, "name": STEADY}, {**base, "name": DONE}],
        "monitor": {"concurrency": concurrency},
    })


def populate(sim, store, n: int, changed: int, spread: float) -> None:
    """n executions at AMC (simulator state) and in the store, created over the last `spread` seconds."""
    from amc_pipeline.amc.simulator.state import iso_z

    state = sim.state
    now = time.time()
    day0 = date(1990, 1, 1)
    done_every = max(1, n // changed) if changed else 0
    for i in range(n):
        workflow = DONE if done_every and i % done_every == 0 and i // done_every < changed else STEADY
        key = (day0 + timedelta(days=i)).isoformat()
        start = datetime(day0.year, day0.month, day0.day, tzinfo=UTC) + timedelta(days=i)
        execution, _ = store.enqueue(workflow=workflow, instance_id=INSTANCE["instance_id"], partition_key=key,
                                     window_start=start, window_end=start + timedelta(days=1))
        attempt = execution.attempt
        fields = {
            "workflowId": f"{workflow}-{attempt.client_token}", "workflowExecutionTimeoutSeconds": 86400,
            "parameterValues": {}, "ignoreDataGaps": False, "disableAggregationControls": False,
            "timeWindowType": "EXPLICIT", "timeWindowStart": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "timeWindowEnd": (start + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "timeWindowTimeZone": "UTC",
        }
        view = state.create_execution(INSTANCE["instance_id"], fields, SQL)
        created = now - spread + spread * i / n
        with state.lock:
            record = state.executions[view["workflowExecutionId"]]
            record["created"] = created
            record["public"].update(createTime=iso_z(created), expireTime=iso_z(created + 86400),
                                    waitUntil=iso_z(created - 3600))
        submitted = datetime.fromtimestamp(created, UTC)
        running = submitted + timedelta(seconds=sim.config.pending_seconds)
        store.transition(attempt.id, "QUEUED", "PENDING", now=submitted, amc_execution_id=view["workflowExecutionId"],
                         amc_status="PENDING", submitted_at=submitted, submit_started_at=submitted,
                         next_check_at=submitted)
        store.transition(attempt.id, "PENDING", "RUNNING", now=running, amc_status="RUNNING", next_check_at=running)


def evaluate_sensor(config, database_url: str, instance) -> tuple[float, float, str]:
    """(due_summary seconds, full sensor evaluation seconds, what the sensor returned)."""
    import dagster as dg

    from amc_pipeline.definitions import build_definitions
    from amc_pipeline.resources import StoreResource, store_for

    t0 = time.perf_counter()
    store_for(database_url).due_summary(datetime.now(UTC))
    summary_seconds = time.perf_counter() - t0
    defs = build_definitions(config)
    sensor = defs.resolve_sensor_def("amc_monitor_sensor")
    context = dg.build_sensor_context(instance=instance, resources={"amc_store": StoreResource(database_url=database_url)})
    t0 = time.perf_counter()
    result = sensor.evaluate_tick(context)
    sensor_seconds = time.perf_counter() - t0
    if result.run_requests:
        what = f"RunRequest(poll_due={result.run_requests[0].tags.get('amc/poll_due')})"
    else:
        what = f"skip: {result.skip_message}"
    return summary_seconds, sensor_seconds, what


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executions", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.05, help="simulator latency per request (s)")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--changed", type=int, default=100, help="executions that have SUCCEEDED at AMC")
    parser.add_argument("--spread-seconds", type=float, default=7200.0, help="creation times spread (s)")
    parser.add_argument("--validate-gets", type=int, default=200, help="sequential GETs timed (0: skip)")
    parser.add_argument("--profile", action="store_true", help="cProfile the poll pass")
    args = parser.parse_args(argv)

    os.environ.setdefault("AMC_CLIENT_ID", "sim-client-id")
    os.environ.setdefault("AMC_CLIENT_SECRET", "sim-client-secret")
    os.environ.setdefault("AMC_REFRESH_TOKEN", "sim-refresh-token")
    import dagster as dg

    from amc_pipeline.amc.client import AmcClient, AmcCredentials, AsyncAmcClient
    from amc_pipeline.amc.simulator import Scenario, SimulatorConfig, SimulatorServer
    from amc_pipeline.monitor.events import PassReport
    from amc_pipeline.monitor.poll import poll_due
    from amc_pipeline.store.store import ExecutionStore

    n = args.executions
    config = build_config(args.concurrency)
    sim_config = SimulatorConfig(
        daily_quota=10 * n + 100, latency_seconds=0.0,
        scenarios={STEADY: Scenario(kind="stuck_running"), DONE: Scenario(kind="succeed")},
    )
    with tempfile.TemporaryDirectory(prefix="amc-poll-bench-") as tmp, SimulatorServer(sim_config) as sim, \
            dg.DagsterInstance.ephemeral() as instance:
        database_url = f"sqlite:///{Path(tmp) / 'store.db'}"
        store = ExecutionStore(database_url)
        creds = AmcCredentials(client_id=sim.config.client_id, client_secret=sim.config.client_secret,
                               refresh_token=sim.config.refresh_token, token_url=sim.token_url)
        try:
            t0 = time.perf_counter()
            populate(sim, store, n, min(args.changed, n), args.spread_seconds)
            print(f"setup: {n} executions in the simulator and the store in {time.perf_counter() - t0:.1f} s "
                  f"({min(args.changed, n)} SUCCEEDED at AMC, the rest RUNNING)")

            summary_before, sensor_before, what_before = evaluate_sensor(config, database_url, instance)

            sim.state.config.latency_seconds = args.latency
            stats_before = sim.stats()
            report = PassReport()
            profiler = cProfile.Profile() if args.profile else None
            t0 = time.perf_counter()
            if profiler:
                profiler.enable()
            poll_due(store, lambda: AsyncAmcClient(sim.url, creds, concurrency=args.concurrency), config,
                     report=report)
            if profiler:
                profiler.disable()
            wall = time.perf_counter() - t0
            stats_after = sim.stats()
            served = {k: stats_after.get(k, 0) - stats_before.get(k, 0) for k in stats_after}
            served = {k: v for k, v in served.items() if v}

            per_get = None
            if args.validate_gets:
                ids = [a.amc_execution_id for _, a in store.active_attempts()[: args.validate_gets]]
                from amc_pipeline.config import InstanceConfig

                inst = InstanceConfig(**INSTANCE)
                with AmcClient(sim.url, creds) as client:
                    client.get_execution(inst, ids[0])  # token fetched outside the timing
                    t0 = time.perf_counter()
                    for amc_id in ids:
                        client.get_execution(inst, amc_id)
                    per_get = (time.perf_counter() - t0) / len(ids)
            sim.state.config.latency_seconds = 0.0
            summary_after, sensor_after, what_after = evaluate_sensor(config, database_url, instance)
            still_due = len(store.due_for_poll(datetime.now(UTC) - timedelta(seconds=5)))
        finally:
            store.close()

    requests_used = report.list_requests + report.get_requests
    floor_requests = math.ceil(n / 100)
    floor_time = floor_requests * args.latency / args.concurrency
    original = n * (args.latency + ORIGINAL_PAUSE)

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    rows = [
        ("AMC requests (list+get, PassReport)", f"{requests_used} ({report.list_requests}+{report.get_requests})",
         f"{floor_requests}", f"<= {2 * floor_requests}", verdict(requests_used <= 2 * floor_requests)),
        ("AMC requests (simulator stats)", ", ".join(f"{k}={v}" for k, v in sorted(served.items())), "", "", ""),
        ("poll pass wall time", f"{wall:.3f} s", f"{floor_time:.3f} s", f"<= {1.5 * floor_time:.3f} s",
         verdict(wall <= 1.5 * floor_time)),
        ("due_summary, all due", f"{summary_before * 1000:.1f} ms", "", "", ""),
        ("sensor evaluation, all due", f"{sensor_before * 1000:.1f} ms", "", "< 1 s", verdict(sensor_before < 1)),
        ("due_summary, after the pass", f"{summary_after * 1000:.1f} ms", "", "", ""),
        ("sensor evaluation, after the pass", f"{sensor_after * 1000:.1f} ms", "", "< 1 s",
         verdict(sensor_after < 1)),
        ("original: 1 GET + 0.5 s pause each", f"{original:,.0f} s ({original / 3600:.2f} h), {n} requests",
         "", "", ""),
    ]
    if per_get is not None:
        rows.append((f"  measured sequential GET ({args.validate_gets})", f"{per_get * 1000:.1f} ms/request",
                     f"{args.latency * 1000:.1f} ms", "", f"→ {n * (per_get + ORIGINAL_PAUSE):,.0f} s"))
    print(f"\n{n} active executions, latency {args.latency * 1000:.0f} ms, concurrency {args.concurrency}")
    print(f"pass: {report.summary()}")
    print(f"sensor before: {what_before}; after: {what_after}; still due after the pass: {still_due}\n")
    widths = [max(len(r[i]) for r in rows + [("what", "ours", "floor", "target", "")]) for i in range(5)]
    header = ("what", "ours", "floor", "target", "")
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if profiler:
        print()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


if __name__ == "__main__":
    main()
