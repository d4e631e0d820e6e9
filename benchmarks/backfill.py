"""A 90-day backfill under AMC's quota, with and without packing. Prints; never asserts.

    .venv/bin/python benchmarks/backfill.py [--windows 90] [--quota 30] [--active 10] [--start 09:00]

Everything runs on a simulated clock (no sleeping). What is real: the engine (`monitor.submit
.submit_queued` with its packing planner, `monitor.poll.poll_due`, the transitions and the state
machine), a real store (SQLite in a temp dir, one per configuration), and the monitor sensor's rule
(every 15 s tick, a monitor pass when `store.due_summary(now)` has work due). What is modelled:

- AMC (`ModelAmc` below, in process): an execution waits PENDING 30 s, then RUNNING as soon as one of
  the instance's 10 slots is free, for 20 min + 2 min per day of its window, then SUCCEEDED. Its
  daily quota is enforced by our submitter (`daily_execution_quota`), which the model does not check
  again. No failures, no throttling.
- The backfill: its 90 runs queue one window each, one a second from the start time (the backfill
  daemon launching runs), through `store.enqueue` as the asset does.
- Landing: the landing sensor's rule (every 15 s tick, one landing run per pack, or per window without
  packing) with a modelled run time of 60 s (download and split of a small daily report), recorded in
  the store with `record_landed`.

Measured per configuration: executions created at AMC, and the time from the start of the backfill to
the last partition landed. Target (issue 13): the 90-day backfill lands within the UTC day it started
(09:00 UTC by default) using at most 3 executions; `met` / `MISSED` per line.
"""

import argparse
import asyncio
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from amc_pipeline.amc.models import AmcExecution, OutputColumn  # noqa: E402
from amc_pipeline.config import PipelineConfig, parse_config  # noqa: E402
from amc_pipeline.monitor.events import PassReport  # noqa: E402
from amc_pipeline.monitor.poll import poll_due  # noqa: E402
from amc_pipeline.monitor.submit import submit_queued  # noqa: E402
from amc_pipeline.partitions import next_utc_day, window_for  # noqa: E402
from amc_pipeline.store.store import ExecutionStore  # noqa: E402

INSTANCE_ID = "amcbackfill1"
FIRST_DAY = datetime(2026, 1, 1, tzinfo=UTC)
TICK = timedelta(seconds=15)
PENDING_SECONDS = 30.0
LANDING_RUN_SECONDS = 60.0
MAX_EXECUTIONS = 3


def run_seconds(days: float) -> float:
    """AMC's running time of an execution over `days` days of data (the issue's model)."""
    return 20 * 60 + 2 * 60 * days


@dataclass
class Modelled:
    """One execution at the model AMC."""

    execution_id: str
    workflow_id: str
    created: datetime
    days: float
    status: str = "PENDING"
    started: datetime | None = None
    ended: datetime | None = None

    def view(self) -> AmcExecution:
        done = self.status == "SUCCEEDED"
        return AmcExecution(
            execution_id=self.execution_id, status=self.status, workflow_id=self.workflow_id,
            create_time=self.created.replace(microsecond=0),
            execution_time_seconds=run_seconds(self.days) if done else None,
            output_columns=(OutputColumn("date", "DATE"), OutputColumn("impressions", "LONG")) if done else (),
        )


class ModelAmc:
    """One AMC instance on the simulated clock (see the module docstring)."""

    def __init__(self, clock, slots: int) -> None:
        self.clock, self.slots = clock, slots
        self.records: list[Modelled] = []
        self.t = datetime.min.replace(tzinfo=UTC)  # the time the model has played up to

    def advance(self) -> None:
        """Play AMC forward to the clock in event order: each end frees a slot, the oldest ready starts."""
        now = self.clock()
        while True:
            running = [r for r in self.records if r.status == "RUNNING"]
            end = min(running, key=self._end, default=None)
            waiting = [r for r in self.records if r.status == "PENDING"]
            ready = min(waiting, key=lambda r: r.created, default=None)
            start_at = None
            if ready is not None and len(running) < self.slots:
                start_at = max(ready.created + timedelta(seconds=PENDING_SECONDS), self.t)
            if start_at is not None and start_at <= now and (end is None or start_at <= self._end(end)):
                ready.status, ready.started, self.t = "RUNNING", start_at, start_at
            elif end is not None and self._end(end) <= now:
                end.status, end.ended = "SUCCEEDED", self._end(end)
                self.t = end.ended
            else:
                return

    @staticmethod
    def _end(record: "Modelled") -> datetime:
        return record.started + timedelta(seconds=run_seconds(record.days))

    def create(self, body: dict) -> AmcExecution:
        self.advance()
        start = datetime.fromisoformat(body["timeWindowStart"])
        end = datetime.fromisoformat(body["timeWindowEnd"])
        workflow_id = (body.get("workflow") or {}).get("workflowId") or body["workflowId"]
        record = Modelled(f"exec-{len(self.records) + 1:04d}", workflow_id, self.clock(),
                          (end - start).total_seconds() / 86400)
        self.records.append(record)
        return record.view()

    def get(self, execution_id: str) -> AmcExecution:
        self.advance()
        return next(r for r in self.records if r.execution_id == execution_id).view()

    def page(self, next_token: str | None = None, **_: object) -> tuple[list[AmcExecution], str | None]:
        self.advance()
        start = int(next_token or 0)
        newest_first = list(reversed(self.records))
        more = start + 100 < len(newest_first)
        return [r.view() for r in newest_first[start:start + 100]], (str(start + 100) if more else None)


class Client:
    """The blocking client's methods the submitter calls."""

    def __init__(self, amc: ModelAmc) -> None:
        self.amc = amc

    def create_execution(self, instance, body):
        return self.amc.create(body)

    def list_executions(self, instance, **filters):
        token = None
        while True:
            page, token = self.amc.page(next_token=token)
            yield from page
            if not token:
                return


class AsyncClient:
    """The asyncio client's methods the poll pass calls."""

    def __init__(self, amc: ModelAmc) -> None:
        self.amc = amc

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        return None

    async def get_execution(self, instance, execution_id):
        return self.amc.get(execution_id)

    async def list_executions_page(self, instance, **filters):
        return self.amc.page(next_token=filters.get("next_token"))

    async def cancel_execution(self, instance, execution_id):
        raise AssertionError("the benchmark never cancels")


def build_config(windows: int, quota: int, active: int, max_windows: int | None) -> PipelineConfig:
    workflow = {"name": "daily_report", "instance_id": INSTANCE_ID, "partitions": "daily", "data_lag_days": 0,
                "start_date": FIRST_DAY.date().isoformat(),
                "end_date": (FIRST_DAY + timedelta(days=windows - 1)).date().isoformat(),
                "sql": "SELECT date, campaign, SUM(impressions) FROM sponsored_ads_traffic GROUP BY 1, 2"}
    if max_windows is not None:
        workflow["packing"] = {"max_windows": max_windows, "split_column": "date"}
    instance = {"instance_id": INSTANCE_ID, "advertiser_id": "ENTITY1AA1AA11AAA1", "marketplace_id": "ATVPDKIKX0DER",
                "max_active_executions": active, "daily_execution_quota": quota}
    return parse_config({"instances": [instance], "workflows": [workflow]})


@dataclass(frozen=True)
class Outcome:
    label: str
    executions: int
    landed: int
    elapsed: timedelta
    same_day: bool

    @property
    def met(self) -> bool:
        return self.same_day and self.executions <= MAX_EXECUTIONS


def replay(label: str, config: PipelineConfig, windows: int, start: datetime, folder: Path) -> Outcome:
    now = start
    amc = ModelAmc(lambda: now, config.instance(INSTANCE_ID).max_active_executions)
    store = ExecutionStore(f"sqlite:///{folder / (label.replace(' ', '_') + '.db')}")
    workflow = config.workflows[0]
    keys = [(FIRST_DAY + timedelta(days=i)).date().isoformat() for i in range(windows)]
    landing: list[tuple[datetime, list]] = []  # (finishes at, [(execution id, attempt id)])
    landed = 0
    last_landed = start
    deadline = start + timedelta(days=10)
    while landed < windows and now < deadline:
        while keys and start + timedelta(seconds=windows - len(keys)) <= now:  # one backfill run a second
            window = window_for(workflow, keys.pop(0))
            store.enqueue(workflow=workflow.name, instance_id=INSTANCE_ID, partition_key=window.partition_key,
                          window_start=window.start_utc, window_end=window.end_utc, now=now)
        if store.due_summary(now).any_due:  # the monitor sensor's rule: a monitor run
            report = PassReport()
            submit_queued(store, Client(amc), config, now=now, report=report)
            poll_due(store, lambda: AsyncClient(amc), config, now=now, report=report)
        for finish, items in [x for x in landing if x[0] <= now]:  # landing runs that completed
            for execution_id, attempt_id in items:
                store.record_landed(execution_id, attempt_id, rows=1, bytes=1, uri="modelled", now=finish)
            landed += len(items)
            last_landed = max(last_landed, finish)
            landing.remove((finish, items))
        groups: dict[object, list] = {}  # the landing sensor's rule: one run per pack, else per window
        for execution in store.landable(now, limit=1000):
            groups.setdefault(execution.attempt.pack_leader_id or f"w{execution.id}", []).append(execution)
        for group in groups.values():
            finish = now + timedelta(seconds=LANDING_RUN_SECONDS)
            for execution in group:
                store.begin_landing(execution.id, lease_until=finish + TICK)
            landing.append((finish, [(e.id, e.current_attempt_id) for e in group]))
        now += TICK
    store.close()
    elapsed = last_landed - start
    return Outcome(label, len(amc.records), landed, elapsed, landed == windows and last_landed < next_utc_day(start))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=90)
    parser.add_argument("--quota", type=int, default=30)
    parser.add_argument("--active", type=int, default=10)
    parser.add_argument("--start", default="09:00", help="UTC time of day the backfill starts")
    args = parser.parse_args()
    hours, minutes = (int(x) for x in args.start.split(":"))
    start = datetime(2026, 4, 6, hours, minutes, tzinfo=UTC)
    print(f"{args.windows} daily windows, quota {args.quota}/day, {args.active} active, AMC run time 20 min + "
          f"2 min/day of data; backfill starts {start:%Y-%m-%d %H:%M} UTC; target: all landed the same UTC day "
          f"with <= {MAX_EXECUTIONS} executions")
    print(f"{'configuration':<22} {'executions':>10} {'landed':>7} {'time to all landed':>19}  target")
    with tempfile.TemporaryDirectory() as tmp:
        for max_windows in (None, 7, 31, 92):
            label = "no packing" if max_windows is None else f"max_windows {max_windows}"
            config = build_config(args.windows, args.quota, args.active, max_windows)
            o = replay(label, config, args.windows, start, Path(tmp))
            hours_taken = o.elapsed.total_seconds() / 3600
            print(f"{o.label:<22} {o.executions:>10} {o.landed:>7} {hours_taken:>17.2f} h  "
                  f"{'met' if o.met else 'MISSED'}")


if __name__ == "__main__":
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    main()
