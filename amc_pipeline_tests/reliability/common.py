"""Shared helpers of the reliability suite: Dagster resources pointing at a rig, landing through Dagster,
and inspection of the results tree.

Everything here drives real components: the simulator over HTTP, a real store, a real Dagster instance.
"""

import csv
import io
import os
import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq

from amc_pipeline.amc.client import RetryPolicy
from amc_pipeline.defs.resources import AmcResource, StoreResource
from amc_pipeline.results.layout import OLD_PREFIX, STAGING_PREFIX


class FastRetryAmcResource(AmcResource):
    """The project's AMC resource with test-speed backoff (the real client, the real retry code).

    The production policy waits 0.5 s and more between tries with up to 1 s of jitter; under a fault
    rate of 20 % per kind that would make a 30-partition backfill take many minutes. Retry-After from
    the simulator is still honoured.
    """

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(attempts=6, wait_initial=0.01, wait_max=0.05, wait_jitter=0.01,
                           budget_seconds=self.retry_budget_seconds)


def resources(r: Any, *, retry_budget_seconds: float = 5.0, fast: bool = True) -> dict[str, Any]:
    """The resources a Dagster run uses, pointed at the rig's simulator and store."""
    cfg = r.sim.config
    resource_class = FastRetryAmcResource if fast else AmcResource
    return {
        "amc": resource_class(api_url=r.sim.url, token_url=r.sim.token_url, client_id=cfg.client_id,
                           client_secret=cfg.client_secret, refresh_token=cfg.refresh_token,
                           retry_budget_seconds=retry_budget_seconds),
        "amc_store": StoreResource(database_url=r.store.engine.url.render_as_string(hide_password=False)),
    }


def materialize(r: Any, defs: dg.Definitions, workflow: str, partition_key: str, instance: dg.DagsterInstance,
                run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    """Materialize one partition of `amc/<workflow>` as a run launched by a sensor or a backfill would."""
    asset = defs.get_assets_def(dg.AssetKey(["amc", workflow]))
    return dg.materialize([asset], partition_key=partition_key, resources=resources(r), instance=instance,
                          run_config=run_config, raise_on_error=False)


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    """The step failures of a run, with their causes (what the run's page in the UI shows)."""
    return "\n".join(e.step_failure_data.error.to_string() for e in result.get_step_failure_events())


def served_rows(sim: Any, amc_execution_id: str) -> int:
    """Rows the simulator served for an execution, parsed independently of the pipeline."""
    rows = 0
    for blob in sim.served_files(amc_execution_id):
        rows += sum(1 for _ in csv.DictReader(io.StringIO(blob.decode("utf-8"), newline="")))
    return rows


def executions_by_window(sim: Any) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The simulator's AMC executions grouped by (workflow key, window start)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in sim.executions():
        key = record["workflowId"].split("-", 1)[0]
        start = record.get("timeWindowStartOriginal") or record.get("timeWindowStart")
        groups[(key, start[:10])].append(record)
    return groups


def leftovers(data_dir: Path) -> list[Path]:
    """Staging/set-aside directories, temporary downloads or stray files visible under the data dir."""
    found = []
    results = data_dir / "results"
    if results.exists():
        for path in results.rglob("*"):
            hidden = path.name.startswith((STAGING_PREFIX, OLD_PREFIX)) or path.name.endswith(".download")
            stray = path.is_file() and not (path.name.startswith("part-") and path.suffix == ".parquet")
            if hidden or stray:
                found.append(path)
    tmp = data_dir / "tmp"
    if tmp.exists():
        found += [p for p in tmp.rglob("*") if p.is_file()]
    return found


def unreadable_parts(data_dir: Path) -> list[str]:
    """Part files that pyarrow cannot read completely (a partial file would show up here)."""
    bad = []
    for part in sorted((data_dir / "results").rglob("part-*.parquet")):
        try:
            meta = pq.read_metadata(part)
            table = pq.read_table(part)
            assert table.num_rows == meta.num_rows
        except Exception as exc:  # noqa: BLE001 - any failure means unreadable
            bad.append(f"{part}: {type(exc).__name__}: {exc}")
    return bad


def sigkill_when(child: subprocess.Popen, ready: Callable[[], bool], *, timeout: float, poll: float,
                 settle: float = 0.0) -> None:
    """SIGKILL `child` once `ready()` says it is mid-work (then `settle` more seconds), as a crash would.

    Always reaps the child and closes its pipes, even when the test fails; asserts it was still
    running when killed and that the kill is what ended it.
    """
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and child.poll() is None and not ready():
            time.sleep(poll)
        assert child.poll() is None, f"child ended before the kill: {child.communicate()}"
        if settle:
            time.sleep(settle)
            assert child.poll() is None
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
