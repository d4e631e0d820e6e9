"""Benchmark one monitor poll pass over many active executions on one instance. Prints figures; never asserts.

    .venv/bin/python benchmarks/poll_scale.py [--executions 10000] [--latency 0.05] [--concurrency 10]
        [--changed 100] [--spread-seconds 7200] [--validate-gets 200] [--profile]

The simulator runs in a child process (its request handlers must not take the GIL from the poller).
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
import asyncio
import cProfile
import math
import os
import pstats
import sys
import tempfile
import time
import warnings
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
        # Limits far past AMC's (10 per instance, 200 per account): this measures polling many.
        "accounts": [{"name": "default", "max_active_executions": 100_000}],
        "instances": [{**INSTANCE, "max_active_executions": 1000, "daily_execution_quota": 100_000}],
        "workflows": [{**base, "name": STEADY}, {**base, "name": DONE}],
        "monitor": {"concurrency": concurrency},
    })


def simulator_process(conn, sim_kwargs: dict) -> None:
    """Child process: run the simulator and obey commands from the pipe until "stop".

    Why a separate process: the simulator's Python request handlers must not compete with the poller
    for the GIL, or the figures would measure the simulator as much as the poll pass.
    """
    from amc_pipeline.simulator import Scenario, SimulatorConfig, SimulatorServer
    from amc_pipeline.simulator.state import iso_z

    scenarios = {key: Scenario(**value) for key, value in sim_kwargs.pop("scenarios").items()}
    with SimulatorServer(SimulatorConfig(scenarios=scenarios, **sim_kwargs)) as sim:
        state = sim.state
        conn.send({"url": sim.url, "token_url": sim.token_url})
        while True:
            command, arg = conn.recv()
            if command == "stop":
                conn.send(None)
                return
            if command == "latency":
                state.config.latency_seconds = float(arg)
                conn.send(None)
            elif command == "stats":
                conn.send(sim.stats())
            elif command == "cpu":
                conn.send(time.process_time())
            elif command == "populate":
                # arg: [(instance_id, fields, sql, created epoch seconds)], in creation order
                ids = []
                for instance_id, fields, sql, created in arg:
                    view = state.create_execution(instance_id, fields, sql)
                    with state.lock:
                        record = state.executions[view["workflowExecutionId"]]
                        record["created"] = created
                        record["public"].update(createTime=iso_z(created), expireTime=iso_z(created + 86400),
                                                waitUntil=iso_z(created - 3600))
                    ids.append(view["workflowExecutionId"])
                conn.send(ids)


class RemoteSimulator:
    """The parent's handle on the simulator child process."""

    def __init__(self, sim_kwargs: dict) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=simulator_process, args=(child, sim_kwargs), daemon=True)
        self._process.start()
        info = self._conn.recv()
        self.url, self.token_url = info["url"], info["token_url"]

    def call(self, command: str, arg=None):
        self._conn.send((command, arg))
        return self._conn.recv()

    def stop(self) -> None:
        try:
            if self._process.is_alive():
                self.call("stop")
        finally:
            self._process.join(timeout=15)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(timeout=5)


def populate(sim: RemoteSimulator, store, n: int, changed: int, spread: float, pending_seconds: float) -> None:
    """n executions at AMC (simulator state) and in the store, created over the last `spread` seconds."""
    now = time.time()
    day0 = date(1990, 1, 1)
    done_every = max(1, n // changed) if changed else 0
    specs, attempts = [], []
    for i in range(n):
        workflow = DONE if done_every and i % done_every == 0 and i // done_every < changed else STEADY
        key = (day0 + timedelta(days=i)).isoformat()
        start = datetime(day0.year, day0.month, day0.day, tzinfo=UTC) + timedelta(days=i)
        execution, _ = store.enqueue(workflow=workflow, instance_id=INSTANCE["instance_id"], partition_key=key,
                                     window_start=start, window_end=start + timedelta(days=1))
        fields = {
            "workflowId": f"{workflow}-{execution.attempt.client_token}", "workflowExecutionTimeoutSeconds": 86400,
            "parameterValues": {}, "ignoreDataGaps": False, "disableAggregationControls": False,
            "timeWindowType": "EXPLICIT", "timeWindowStart": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "timeWindowEnd": (start + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "timeWindowTimeZone": "UTC",
        }
        created = now - spread + spread * i / n
        specs.append((INSTANCE["instance_id"], fields, SQL, created))
        attempts.append((execution.attempt.id, created))
    ids = sim.call("populate", specs)
    for (attempt_id, created), amc_id in zip(attempts, ids, strict=True):
        submitted = datetime.fromtimestamp(created, UTC)
        running = submitted + timedelta(seconds=pending_seconds)
        store.transition(attempt_id, "QUEUED", "PENDING", now=submitted, amc_execution_id=amc_id,
                         amc_status="PENDING", submitted_at=submitted, submit_started_at=submitted,
                         next_check_at=submitted)
        store.transition(attempt_id, "PENDING", "RUNNING", now=running, amc_status="RUNNING", next_check_at=running)


async def bare_requests(url: str, creds, count: int, concurrency: int) -> float:
    """Seconds for `count` list requests answering nothing, `concurrency` at a time (token fetched first):
    the transport floor this machine and the simulator actually reach, for comparison with the pass."""
    from amc_pipeline.amc.client import AsyncAmcClient
    from amc_pipeline.config import InstanceConfig

    inst = InstanceConfig(**INSTANCE)
    since = datetime.now(UTC) + timedelta(days=1)  # nothing was created after tomorrow
    async with AsyncAmcClient(url, creds, concurrency=concurrency) as client:
        await client.list_executions_page(inst, min_creation_time=since)
        sem = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with sem:
                await client.list_executions_page(inst, min_creation_time=since)

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(count)))
        return time.perf_counter() - t0


def evaluate_sensor(config, database_url: str, instance) -> tuple[float, float, str]:
    """(due_summary seconds, full sensor evaluation seconds, what the sensor returned)."""
    import dagster as dg

    from amc_pipeline.definitions import build_definitions
    from amc_pipeline.defs.resources import StoreResource
    from amc_pipeline.store.cache import store_for

    t0 = time.perf_counter()
    store_for(database_url).due_summary(datetime.now(UTC))
    summary_seconds = time.perf_counter() - t0
    defs = build_definitions(config)
    sensor = defs.resolve_sensor_def("amc_monitor_sensor")
    resources = {"amc_store": StoreResource(database_url=database_url)}
    context = dg.build_sensor_context(instance=instance, resources=resources)
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

    # Dagster's preview/beta notices about the project's definitions are noise here.
    warnings.filterwarnings("ignore", message=r".*currently in (preview|beta)")
    os.environ.setdefault("AMC_CLIENT_ID", "sim-client-id")
    os.environ.setdefault("AMC_CLIENT_SECRET", "sim-client-secret")
    os.environ.setdefault("AMC_REFRESH_TOKEN", "sim-refresh-token")
    import dagster as dg

    from amc_pipeline.amc.client import AmcClient, AmcCredentials, AsyncAmcClient
    from amc_pipeline.config import InstanceConfig
    from amc_pipeline.monitor.events import PassReport
    from amc_pipeline.monitor.poll import poll_due
    from amc_pipeline.store.store import ExecutionStore

    n = args.executions
    floor_requests = math.ceil(n / 100)
    config = build_config(args.concurrency)
    pending_seconds = 2.0
    sim = RemoteSimulator({
        "daily_quota": 10 * n + 100, "max_active_executions": 10 * n + 100, "latency_seconds": 0.0,
        "pending_seconds": pending_seconds,
        "scenarios": {STEADY: {"kind": "stuck_running"}, DONE: {"kind": "succeed"}},
    })
    try:
        with tempfile.TemporaryDirectory(prefix="amc-poll-bench-") as tmp, dg.DagsterInstance.ephemeral() as instance:
            database_url = f"sqlite:///{Path(tmp) / 'store.db'}"
            store = ExecutionStore(database_url)
            creds = AmcCredentials(client_id="sim-client-id", client_secret="sim-client-secret",
                                   refresh_token="sim-refresh-token", token_url=sim.token_url)
            try:
                t0 = time.perf_counter()
                populate(sim, store, n, min(args.changed, n), args.spread_seconds, pending_seconds)
                print(f"setup: {n} executions in the simulator and the store in {time.perf_counter() - t0:.1f} s "
                      f"({min(args.changed, n)} SUCCEEDED at AMC, the rest RUNNING)")

                summary_before, sensor_before, what_before = evaluate_sensor(config, database_url, instance)

                sim.call("latency", args.latency)
                stats_before = sim.call("stats")
                sim_cpu = sim.call("cpu")
                report = PassReport()
                profiler = cProfile.Profile() if args.profile else None
                t0 = time.perf_counter()
                cpu0 = time.process_time()
                if profiler:
                    profiler.enable()
                poll_due(store, lambda: AsyncAmcClient(sim.url, creds, concurrency=args.concurrency), config,
                         report=report)
                if profiler:
                    profiler.disable()
                wall = time.perf_counter() - t0
                our_cpu = time.process_time() - cpu0
                sim_cpu = sim.call("cpu") - sim_cpu
                stats_after = sim.call("stats")
                served = {k: stats_after.get(k, 0) - stats_before.get(k, 0) for k in stats_after}
                served = {k: v for k, v in served.items() if v}

                per_get = None
                if args.validate_gets:
                    ids = [a.amc_execution_id for _, a in store.active_attempts()[: args.validate_gets]]
                    inst = InstanceConfig(**INSTANCE)
                    with AmcClient(sim.url, creds) as client:
                        client.get_execution(inst, ids[0])  # token fetched outside the timing
                        t0 = time.perf_counter()
                        for amc_id in ids:
                            client.get_execution(inst, amc_id)
                        per_get = (time.perf_counter() - t0) / len(ids)
                bare = asyncio.run(bare_requests(sim.url, creds, floor_requests, args.concurrency))
                sim.call("latency", 0.0)
                summary_after, sensor_after, what_after = evaluate_sensor(config, database_url, instance)
                still_due = len(store.due_for_poll(datetime.now(UTC) - timedelta(seconds=5)))
            finally:
                store.close()
    finally:
        sim.stop()

    requests_used = report.list_requests + report.get_requests
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
        ("  our process CPU during the pass", f"{our_cpu:.3f} s", "", "", ""),
        (f"  bare: {floor_requests} empty list requests", f"{bare:.3f} s", f"{floor_time:.3f} s", "",
         "(this machine + simulator, no work)"),
        ("  simulator CPU during the pass", f"{sim_cpu:.3f} s", "", "", "(its own process; serial per request)"),
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
    print(f"\nload average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{n} active executions, latency {args.latency * 1000:.0f} ms, concurrency {args.concurrency}")
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
