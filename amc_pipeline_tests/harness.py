"""Shared pieces for tests that drive the pipeline against the real simulator over HTTP."""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from amc_pipeline.amc.client import AmcClient, AmcCredentials, AsyncAmcClient, RetryPolicy
from amc_pipeline.config import PipelineConfig, parse_config
from amc_pipeline.monitor.events import PassReport
from amc_pipeline.monitor.poll import poll_due
from amc_pipeline.monitor.submit import submit_queued
from amc_pipeline.partitions import window_for
from amc_pipeline.simulator import Scenario, SimulatorConfig, SimulatorServer
from amc_pipeline.store.store import ExecutionStore
from amc_pipeline_tests.constants import FAST_LIFECYCLE, INSTANCE, INSTANCE_ID

FAST_MONITOR = {
    "sensor_interval_seconds": 1,
    "poll_initial_seconds": 0.05,
    "poll_max_seconds": 0.2,
    "retry_base_seconds": 0.1,
    "retry_max_seconds": 0.2,
    "ambiguous_grace_seconds": 0.0,
    "landing_retry_seconds": 0.1,
}
FAST_RETRY = RetryPolicy(attempts=4, wait_initial=0.01, wait_max=0.05, budget_seconds=5.0, wait_jitter=0.01)


def pipeline_config(workflows: list[dict[str, Any]], *, instance: dict | None = None,
                    monitor: dict | None = None, account: dict | None = None) -> PipelineConfig:
    """One instance of the default account (`account` overrides that account's fields, e.g. its limit)."""
    base = {"instance_id": INSTANCE_ID, "partitions": "daily", "start_date": "2026-10-01", "data_lag_days": 0}
    return parse_config({
        "accounts": [{"name": "default", **(account or {})}],
        "instances": [{**INSTANCE, **(instance or {})}],
        "workflows": [{**base, **w} for w in workflows],
        "monitor": {**FAST_MONITOR, **(monitor or {})},
    })


def sim_config(**overrides: Any) -> SimulatorConfig:
    values: dict[str, Any] = dict(FAST_LIFECYCLE)
    values.update(overrides)
    return SimulatorConfig(**values)


def credentials(sim: SimulatorServer) -> AmcCredentials:
    cfg = sim.config
    return AmcCredentials(client_id=cfg.client_id, client_secret=cfg.client_secret,
                          refresh_token=cfg.refresh_token, token_url=sim.token_url)


@dataclass
class Rig:
    """A simulator, a store and a config wired together, with helpers to drive monitor passes."""

    sim: SimulatorServer
    store: ExecutionStore
    config: PipelineConfig
    client: AmcClient

    def async_client(self) -> AsyncAmcClient:
        return AsyncAmcClient(self.sim.url, credentials(self.sim), concurrency=self.config.monitor.concurrency,
                              retry=FAST_RETRY)

    def request(self, workflow: str, partition_key: str, **kwargs: Any):
        window = window_for(self.config.workflow(workflow), partition_key)
        return self.store.enqueue(workflow=workflow, instance_id=window.instance_id,
                                  partition_key=partition_key, window_start=window.start_utc,
                                  window_end=window.end_utc, **kwargs)

    def monitor_pass(self, now: datetime | None = None) -> PassReport:
        report = PassReport()
        submit_queued(self.store, self.client, self.config, now=now, report=report)
        poll_due(self.store, self.async_client, self.config, now=now, report=report)
        return report

    def drive(self, until: Callable[[], bool], *, timeout: float = 20.0, pause: float = 0.05) -> list[PassReport]:
        reports = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reports.append(self.monitor_pass())
            if until():
                return reports
            time.sleep(pause)
        raise AssertionError(f"condition not reached within {timeout}s; last pass: {reports[-1].summary()}")

    def status(self, workflow: str, partition_key: str) -> str | None:
        execution = self.store.get_live(workflow, partition_key)
        return execution.attempt.status if execution and execution.attempt else None


@contextmanager
def rig(workflows: list[dict[str, Any]], *, database_url: str, scenarios: dict[str, Scenario] | None = None,
        monitor: dict | None = None, instance: dict | None = None, account: dict | None = None,
        **sim_overrides: Any) -> Iterator[Rig]:
    config = pipeline_config(workflows, monitor=monitor, instance=instance, account=account)
    with SimulatorServer(sim_config(scenarios=dict(scenarios or {}), **sim_overrides)) as sim:
        store = ExecutionStore(database_url)
        client = AmcClient(sim.url, credentials(sim), retry=FAST_RETRY)
        try:
            yield Rig(sim=sim, store=store, config=config, client=client)
        finally:
            client.close()
            store.close()


def now_utc() -> datetime:
    return datetime.now(UTC)
