"""A day in the life of the monitor: what each polling policy costs and how late it learns. Prints; never asserts.

    .venv/bin/python benchmarks/monitor_day.py [--days 5] [--seed 1] [--between-sigma 0.5] [--within-sigma 0.3]

Everything runs on a simulated clock (no sleeping): the real engine (`monitor.submit.submit_queued`,
`monitor.poll.poll_due`, the real `transitions`), a real store (SQLite in a temp dir, one per policy)
and an in-process AMC (`DayAmc` below: a small benchmark harness that plays one AMC instance, with the
client methods submit and poll call; it is not a mock of anything that could run for real).

The day, on one instance (`max_active_executions` 10, `daily_execution_quota` 30), repeated `--days`:
- 06:00 UTC: the 12 daily workflows are requested at once (12 > 10: two wait QUEUED in our store);
  08:00-18:00: 18 more requests (backfills, analysts) for random workflows at random times: 30 a day.
- AMC runs at most 10 executions at once on the instance, counting 3 console queries a day by another
  user (06:05, 11:00, 15:00, 30-60 min each, seen on our list pages and ignored), so some of ours
  wait PENDING behind the limit; each execution also waits 20-90 s PENDING before it runs.
- Running times are log-normal with a median of 25 min, clipped to 5-120 min: each workflow has its
  own typical time (25 min x e^N(0, between-sigma)) and each run varies around it (x e^N(0,
  within-sigma)); `--between-sigma 0 --within-sigma 0.65` makes every run independent of its workflow.
- 3 of each day's 30 FAILED: one rejected for bad SQL 20-50 s after it starts; two fail for a query
  error at the end of their drawn running time. No retries (the reasons are final).

Policies, each replayed over the same requests and the same AMC behaviour:
(a) original: every 15 s while anything is queued or active, one GET per active execution; one long-lived
    process, so a 1 h token is refreshed once an hour.
(b) previous: the backoff policy as on main before the per-instance pass (`PreviousBackoff` below, a
    faithful copy kept here only): only due executions are checked, list pages from 20 due, each next
    check after as long as the status has held (30 s ... 5 min).
(c) new: this project's `PollStrategy` / `RunTimePlan` with the default `MonitorConfig`.
For (b) and (c) the monitor sensor's logic decides runs: every 15 s tick, `store.due_summary(now)`; a tick
with work due is a monitor run (submit pass, then poll pass, at that tick's time); each run gets its own
token cache (`AmcResource`: one token refresh per run that calls AMC).

Measured: status requests (GETs and list pages), creates, monitor runs, token refreshes (per day), runs in
idle hours (UTC hours in which no request was queued or active in our store at any moment), and
detection latency: AMC finished (the in-process AMC's end time) → the store records the terminal
status, p50 / p95 / max over every execution of every day. Targets (new policy): p95 ≤ 60 s,
p50 ≤ 30 s, ≤ 2,000 status requests and ≤ 2,000 monitor runs a day, zero runs in idle hours.
"""

import argparse
import math
import random
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from amc_pipeline.amc.models import AmcExecution, OutputColumn  # noqa: E402
from amc_pipeline.config import PipelineConfig, parse_config  # noqa: E402
from amc_pipeline.monitor.events import PassReport  # noqa: E402
from amc_pipeline.monitor.poll import PollStrategy, poll_due  # noqa: E402
from amc_pipeline.monitor.submit import submit_queued  # noqa: E402
from amc_pipeline.monitor.transitions import apply_observation  # noqa: E402
from amc_pipeline.partitions import window_for  # noqa: E402
from amc_pipeline.store.states import ACTIVE, TERMINAL  # noqa: E402
from amc_pipeline.store.store import DueCheck, ExecutionStore  # noqa: E402

INSTANCE_ID = "amcday00001"
INSTANCE = {"instance_id": INSTANCE_ID, "advertiser_id": "ENTITY1AA1AA11AAA1", "marketplace_id": "ATVPDKIKX0DER",
            "max_active_executions": 10, "daily_execution_quota": 30}
WORKFLOWS = [f"daily_report_{i:02d}" for i in range(12)]
SQL = "SELECT campaign, SUM(impressions) FROM sponsored_ads_traffic GROUP BY 1"
DAY0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
TICK = timedelta(seconds=15)  # the monitor sensor's interval (MonitorConfig default)
TOKEN_LIFETIME = timedelta(hours=1)
AMC_SLOTS = 10  # executions AMC runs at once on the instance (everyone's)
BAD_SQL = "Query compile error: column 'impresions' not found"
LATE_FAILURE = "Query failed: division by zero in column ctr"
TARGETS = {"p95": 60.0, "p50": 30.0, "requests": 2000, "runs": 2000, "idle_runs": 0}


def build_config() -> PipelineConfig:
    base = {"instance_id": INSTANCE_ID, "partitions": "daily", "start_date": "2020-01-01", "data_lag_days": 0,
            "sql": SQL}
    return parse_config({"instances": [INSTANCE], "workflows": [{**base, "name": n} for n in WORKFLOWS]})


# ------------------------------------------------------------------------------------ the workload


@dataclass(frozen=True)
class Planned:
    """What AMC will do with one of our requests."""

    requested: datetime
    workflow: str
    run_seconds: float
    failure: str | None  # AMC's failureReason when it fails


def workload(days: int, seed: int, between: float, within: float) -> tuple[list[Planned], list[tuple]]:
    """Our requests (sorted by time) and the console's executions [(created, run_seconds)]."""
    rng = random.Random(seed)
    typical = {w: 25 * 60 * math.exp(rng.gauss(0, between)) for w in WORKFLOWS}

    def run_time(w: str) -> float:
        return min(max(typical[w] * math.exp(rng.gauss(0, within)), 5 * 60), 120 * 60)

    ours, console = [], []
    for d in range(days):
        day = DAY0 + timedelta(days=d)
        todays = [(day + timedelta(hours=6), w) for w in WORKFLOWS]
        for _ in range(18):
            todays.append((day + timedelta(hours=8, seconds=rng.uniform(0, 10 * 3600)), rng.choice(WORKFLOWS)))
        todays.sort()
        failing = rng.sample(range(len(todays)), 3)
        for i, (at, w) in enumerate(todays):
            seconds, failure = run_time(w), None
            if i == failing[0]:
                seconds, failure = rng.uniform(20, 50), BAD_SQL
            elif i in failing[1:]:
                failure = LATE_FAILURE
            ours.append(Planned(at, w, seconds, failure))
        for hours in (6 + 5 / 60, 11, 15):
            console.append((day + timedelta(hours=hours), rng.uniform(30, 60) * 60))
    ours.sort(key=lambda p: p.requested)
    return ours, console


# ------------------------------------------------------------------------------- the in-process AMC


@dataclass
class Record:
    execution_id: str
    workflow_id: str
    created: datetime
    ready: datetime  # AMC's own PENDING time is over: it runs as soon as a slot is free
    run_seconds: float
    failure: str | None
    status: str = "PENDING"
    started: datetime | None = None
    ended: datetime | None = None

    def view(self) -> AmcExecution:
        done = self.status in ("SUCCEEDED", "FAILED", "CANCELLED")
        return AmcExecution(
            execution_id=self.execution_id, status=self.status, workflow_id=self.workflow_id,
            create_time=self.created.replace(microsecond=0), last_updated_time=self.ended or self.started,
            execution_time_seconds=round(self.run_seconds) if done and self.status == "SUCCEEDED" else None,
            failure_reason=self.failure if self.status == "FAILED" else None,
            output_columns=(OutputColumn("campaign", "STRING"), OutputColumn("impressions", "LONG"))
            if self.status == "SUCCEEDED" else (),
        )


@dataclass
class Session:
    """One token cache: a monitor run's (AmcResource), or the original's long-lived process."""

    amc: "DayAmc"
    expires: datetime | None = None

    def authorize(self) -> None:
        now = self.amc.clock()
        if self.expires is None or now >= self.expires:
            self.amc.counts["token"] += 1
            self.expires = now + TOKEN_LIFETIME


class DayAmc:
    """One AMC instance on the simulated clock: PENDING (20-90 s, then a free slot of AMC_SLOTS), RUNNING
    for the planned time, then SUCCEEDED or FAILED. Counts every request it answers."""

    def __init__(self, clock, plans: dict[str, Planned], console: list[tuple], rng: random.Random) -> None:
        self.clock = clock
        self.plans = plans  # by our AMC workflowId
        self.records: dict[str, Record] = {}
        self.order: list[Record] = []  # creation order
        self.counts: Counter = Counter()
        self.rng = rng
        self.console = sorted(console)
        self.t = datetime.min.replace(tzinfo=UTC)

    def _create(self, workflow_id: str, at: datetime, run_seconds: float, failure: str | None) -> Record:
        record = Record(execution_id=f"exec-{len(self.order) + 1:06d}", workflow_id=workflow_id, created=at,
                        ready=at + timedelta(seconds=self.rng.uniform(20, 90)), run_seconds=run_seconds,
                        failure=failure)
        self.records[record.execution_id] = record
        self.order.append(record)
        return record

    def advance(self) -> None:
        """Play AMC forward to the clock: starts when a slot frees (oldest ready first), ends when due."""
        to = self.clock()
        while self.console and self.console[0][0] <= to:
            created, seconds = self.console.pop(0)
            self._create(f"console-{created:%Y%m%d%H%M}", created, seconds, None)
        while True:
            live = [r for r in self.order[-200:] if r.status in ("PENDING", "RUNNING")]
            running = [r for r in live if r.status == "RUNNING"]
            end = min(running, key=lambda r: r.started + timedelta(seconds=r.run_seconds), default=None)
            end_at = end.started + timedelta(seconds=end.run_seconds) if end else None
            waiting = [r for r in live if r.status == "PENDING"]
            first = min(waiting, key=lambda r: (r.ready, r.created), default=None)
            start_at = max(first.ready, self.t) if first is not None and len(running) < AMC_SLOTS else None
            if start_at is not None and start_at <= to and (end_at is None or start_at < end_at):
                first.status, first.started, self.t = "RUNNING", start_at, start_at
            elif end_at is not None and end_at <= to:
                end.status = "FAILED" if end.failure else "SUCCEEDED"
                end.ended = self.t = end_at
            else:
                self.t = max(self.t, to)
                return

    def request(self, kind: str, session: Session) -> None:
        session.authorize()
        self.counts[kind] += 1
        self.advance()

    # -- the client methods the engine calls (sync: submit; async: poll) ------------------------

    def create_execution(self, session: Session, body: dict) -> AmcExecution:
        self.request("create", session)
        workflow_id = (body.get("workflow") or {}).get("workflowId") or body["workflowId"]  # ad hoc or saved
        plan = self.plans[workflow_id]
        return self._create(workflow_id, self.clock(), plan.run_seconds, plan.failure).view()

    def get_execution(self, session: Session, execution_id: str) -> AmcExecution:
        self.request("get", session)
        return self.records[execution_id].view()

    def list_page(self, session: Session, *, min_creation_time=None, max_creation_time=None, workflow_id=None,
                  sort_ascending=False, limit=100, next_token=None, **_: object):
        self.request("list", session)
        lo = min_creation_time.replace(microsecond=0) if min_creation_time else None
        hi = max_creation_time.replace(microsecond=0) if max_creation_time else None
        found = [r for r in self.order
                 if (lo is None or r.created.replace(microsecond=0) >= lo)
                 and (hi is None or r.created.replace(microsecond=0) <= hi)
                 and (workflow_id is None or r.workflow_id == workflow_id)]
        if not sort_ascending:
            found.reverse()
        start = int(next_token or 0)
        page = found[start:start + limit]
        more = start + limit < len(found)
        return [r.view() for r in page], (str(start + limit) if more else None)

    def cancel_execution(self, session: Session, execution_id: str) -> AmcExecution:
        self.request("cancel", session)
        record = self.records[execution_id]
        if record.status in ("PENDING", "RUNNING"):
            record.status, record.ended = "CANCELLED", self.clock()
        return record.view()


class DayClient:
    """The blocking client's methods submit calls, answered by `DayAmc` within one token session."""

    def __init__(self, amc: DayAmc, session: Session) -> None:
        self.amc, self.session = amc, session

    def create_execution(self, instance, body):
        return self.amc.create_execution(self.session, body)

    def get_execution(self, instance, execution_id):
        return self.amc.get_execution(self.session, execution_id)

    def list_executions_page(self, instance, **filters):
        return self.amc.list_page(self.session, **filters)

    def list_executions(self, instance, **filters):
        token = None
        while True:
            page, token = self.amc.list_page(self.session, next_token=token, **filters)
            yield from page
            if not token:
                return

    def cancel_execution(self, instance, execution_id):
        return self.amc.cancel_execution(self.session, execution_id)


class DayAsyncClient(DayClient):
    """The asyncio client's methods poll calls (same answers, awaited)."""

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        return None

    async def get_execution(self, instance, execution_id):
        return self.amc.get_execution(self.session, execution_id)

    async def list_executions_page(self, instance, **filters):
        return self.amc.list_page(self.session, **filters)

    async def cancel_execution(self, instance, execution_id):
        return self.amc.cancel_execution(self.session, execution_id)


# ------------------------------------------------------------- (b) the previous policy, copied here


class PreviousBackoffPlan:
    """THE PREVIOUS POLICY (monitor/transitions.next_check_at on main before the per-instance pass),
    copied verbatim for this benchmark only: wait about as long as the status has already held,
    between poll_initial_seconds (30 s) and poll_max_seconds (300 s)."""

    def __init__(self, policy) -> None:
        self.policy = policy

    def next_check(self, workflow, attempt, now: datetime) -> datetime:
        since = attempt.status_changed_at or attempt.submitted_at or now
        held = max((now - since).total_seconds(), 0.0)
        wait = min(max(self.policy.poll_initial_seconds, held), self.policy.poll_max_seconds)
        return now + timedelta(seconds=wait)


class PreviousBackoff(PollStrategy):
    """THE PREVIOUS POLICY's pass (monitor/poll.py on main before the per-instance pass): only the due
    attempts are checked, list pages from 20 due on one instance (main's list_threshold), GETs below."""

    LIST_THRESHOLD = 20

    def instances_due(self, store: ExecutionStore, now: datetime) -> list[str]:
        return sorted({c.instance_id for c in store.due_checks(now)})

    def checks(self, store: ExecutionStore, instance_ids: list[str], now: datetime) -> dict[str, list[DueCheck]]:
        out: dict[str, list[DueCheck]] = {i: [] for i in instance_ids}
        for check in store.due_checks(now):
            if check.instance_id in out:
                out[check.instance_id].append(check)
        return out

    def plans(self, store, config, instance_ids):
        return {i: PreviousBackoffPlan(config.monitor) for i in instance_ids}

    def use_list(self, config, count: int) -> bool:
        return count >= self.LIST_THRESHOLD


# ---------------------------------------------------------------------------------- the replay


@dataclass
class Outcome:
    name: str
    days: int
    counts: Counter
    runs: list[datetime] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    idle_hours: int = 0
    idle_runs: int = 0
    finished: int = 0
    failed: int = 0

    def per_day(self, value: float) -> float:
        return value / self.days

    @property
    def status_requests(self) -> int:
        return self.counts["get"] + self.counts["list"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def replay(name: str, days: int, seed: int, between: float, within: float, folder: Path) -> Outcome:
    config = build_config()
    ours, console = workload(days, seed, between, within)
    now = DAY0
    clock = lambda: now  # noqa: E731  (the simulated clock every part reads)
    store = ExecutionStore(f"sqlite:///{folder / (name + '.db')}")
    plans: dict[str, Planned] = {}
    amc = DayAmc(clock, plans, console, random.Random(seed + 1))
    keys = Counter()
    arrivals = list(ours)
    long_lived = Session(amc)  # (a): one process for the whole replay
    outcome = Outcome(name, days, amc.counts)
    end = DAY0 + timedelta(days=days)
    strategy = PreviousBackoff() if name == "previous" else PollStrategy()

    def enqueue_arrivals() -> None:
        while arrivals and arrivals[0].requested <= now:
            p = arrivals.pop(0)
            keys[p.workflow] += 1
            key = (datetime(2020, 1, 1) + timedelta(days=keys[p.workflow])).date().isoformat()
            window = window_for(config.workflow(p.workflow), key)
            execution, _ = store.enqueue(workflow=p.workflow, instance_id=INSTANCE_ID, partition_key=key,
                                         window_start=window.start_utc, window_end=window.end_utc, now=p.requested)
            plans[f"{p.workflow}-{execution.attempt.client_token}"] = p

    def anything_open() -> bool:
        """Queued (due or waiting for a slot) or active in our store: the original keeps polling."""
        return bool(store.active_attempts(INSTANCE_ID)
                    or store.queued_for_submit(INSTANCE_ID, now + timedelta(days=2), limit=1)
                    or store.ambiguous_attempts(INSTANCE_ID))

    def original_pass() -> None:
        """(a): submit, then one GET for every active execution, through the real transitions."""
        client = DayClient(amc, long_lived)
        report = PassReport()
        submit_queued(store, client, config, now=now, report=report)
        for execution, attempt in store.active_attempts(INSTANCE_ID):
            observed = client.get_execution(None, attempt.amc_execution_id)
            apply_observation(store, config, execution, attempt, observed, now, report)

    while now < end or (now < end + timedelta(days=1) and (arrivals or anything_open())):
        enqueue_arrivals()
        if name == "original":
            if anything_open():
                outcome.runs.append(now)
                original_pass()
            nxt = now + TICK if anything_open() else None
        else:
            summary = store.due_summary(now)
            if summary.any_due:
                outcome.runs.append(now)
                session = Session(amc)  # AmcResource: one token cache per run
                report = PassReport()
                submit_queued(store, DayClient(amc, session), config, now=now, report=report)
                poll_due(store, lambda s=session: DayAsyncClient(amc, s), config, now=now, report=report,
                         strategy=strategy)
                summary = store.due_summary(now)
            nxt = summary.next_due_at
        # Jump to the next tick at which anything can be due (the sensor's ticks in between find nothing).
        candidates = [t for t in (nxt, arrivals[0].requested if arrivals else None) if t is not None]
        if not candidates:
            break
        target = max(min(candidates), now + TICK)
        now = DAY0 + TICK * math.ceil((target - DAY0) / TICK)

    # Detection latency and idle hours, from the store and the in-process AMC.
    busy_spans: list[tuple[datetime, datetime]] = []
    for execution in store.list_executions(instance_id=INSTANCE_ID, live_only=False):
        for attempt in store.attempts_for(execution.id):
            record = amc.records.get(attempt.amc_execution_id or "")
            if attempt.status in TERMINAL and record is not None and record.ended is not None:
                outcome.latencies.append((attempt.completed_at - record.ended).total_seconds())
                outcome.finished += 1
                outcome.failed += attempt.status == "FAILED"
            busy_spans.append((attempt.created_at, attempt.completed_at or now))
    hour = DAY0
    while hour < max(now, end):
        nxt_hour = hour + timedelta(hours=1)
        if not any(a < nxt_hour and b >= hour for a, b in busy_spans):
            outcome.idle_hours += 1
            outcome.idle_runs += sum(hour <= r < nxt_hour for r in outcome.runs)
        hour = nxt_hour
    assert not any(a.status in ACTIVE for _, a in store.active_attempts())
    store.close()
    return outcome


# ---------------------------------------------------------------------------------------- report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--between-sigma", type=float, default=0.5, help="spread of workflows' typical times")
    parser.add_argument("--within-sigma", type=float, default=0.3, help="spread of one workflow's runs")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="monitor-day-") as tmp:
        results = [replay(name, args.days, args.seed, args.between_sigma, args.within_sigma, Path(tmp))
                   for name in ("original", "previous", "new")]

    o, p, n = results
    print(f"monitor_day: {args.days} simulated days x 30 executions on one instance (seed {args.seed}, "
          f"between-sigma {args.between_sigma}, within-sigma {args.within_sigma}); figures per day, "
          f"latency over all {n.finished} executions\n")
    rows = [
        ("status requests / day", lambda r: f"{r.per_day(r.status_requests):,.0f}"
         f" ({r.per_day(r.counts['get']):,.0f} GET, {r.per_day(r.counts['list']):,.0f} list)"),
        ("creates / day", lambda r: f"{r.per_day(r.counts['create']):.0f}"),
        ("monitor runs / day", lambda r: f"{r.per_day(len(r.runs)):,.0f}"),
        ("token refreshes / day", lambda r: f"{r.per_day(r.counts['token']):,.0f}"),
        ("runs in idle hours", lambda r: f"{r.idle_runs} (in {r.idle_hours} idle h)"),
        ("detection latency p50", lambda r: f"{pct(r.latencies, 0.5):.0f} s"),
        ("detection latency p95", lambda r: f"{pct(r.latencies, 0.95):.0f} s"),
        ("detection latency max", lambda r: f"{max(r.latencies):.0f} s"),
        ("finished (FAILED)", lambda r: f"{r.finished} ({r.failed})"),
    ]
    width = 26
    print(f"| {'':{width}} | {'(a) original 15 s GETs':>28} | {'(b) previous backoff':>28} | "
          f"{'(c) new per instance':>28} |")
    print(f"|{'-' * (width + 2)}|{'-' * 30}:|{'-' * 30}:|{'-' * 30}:|")
    for label, fmt in rows:
        print(f"| {label:{width}} | {fmt(o):>28} | {fmt(p):>28} | {fmt(n):>28} |")

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    checks = [
        (f"p95 latency ≤ {TARGETS['p95']:.0f} s", pct(n.latencies, 0.95), pct(n.latencies, 0.95) <= TARGETS["p95"]),
        (f"p50 latency ≤ {TARGETS['p50']:.0f} s", pct(n.latencies, 0.5), pct(n.latencies, 0.5) <= TARGETS["p50"]),
        (f"status requests ≤ {TARGETS['requests']:,} / day", n.per_day(n.status_requests),
         n.per_day(n.status_requests) <= TARGETS["requests"]),
        (f"monitor runs ≤ {TARGETS['runs']:,} / day", n.per_day(len(n.runs)),
         n.per_day(len(n.runs)) <= TARGETS["runs"]),
        ("zero runs in idle hours", n.idle_runs, n.idle_runs == TARGETS["idle_runs"]),
    ]
    print("\nnew policy targets:")
    for label, value, ok in checks:
        print(f"  {label:32} {value:>8,.0f}  {verdict(ok)}")


if __name__ == "__main__":
    main()
