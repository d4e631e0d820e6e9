"""Shared helpers of the reliability suite: Dagster resources pointing at a rig, landing through Dagster,
and inspection of the results tree.

Everything here drives real components: the simulator over HTTP, a real store, a real Dagster instance.
"""

import csv
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq

from amc_pipeline.amc.resource import AmcResource
from amc_pipeline.resources import StoreResource
from amc_pipeline.results.layout import OLD_PREFIX, STAGING_PREFIX


def resources(r: Any, *, retry_budget_seconds: float = 5.0) -> dict[str, Any]:
    """The resources a Dagster run uses, pointed at the rig's simulator and store."""
    cfg = r.sim.config
    return {
        "amc": AmcResource(api_url=r.sim.url, token_url=r.sim.token_url, client_id=cfg.client_id,
                           client_secret=cfg.client_secret, refresh_token=cfg.refresh_token,
                           retry_budget_seconds=retry_budget_seconds),
        "amc_store": StoreResource(database_url=r.store.engine.url.render_as_string(hide_password=False)),
    }


def materialize(r: Any, defs: dg.Definitions, workflow: str, partition_key: str, instance: dg.DagsterInstance,
                **kwargs: Any) -> dg.ExecuteInProcessResult:
    """Materialize one partition of `amc/<workflow>` as a run launched by a sensor or a backfill would."""
    asset = defs.get_assets_def(dg.AssetKey(["amc", workflow]))
    return dg.materialize([asset], partition_key=partition_key, resources=resources(r, **kwargs),
                          instance=instance, raise_on_error=False)


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
            if path.name.startswith((STAGING_PREFIX, OLD_PREFIX)) or path.name.endswith(".download"):
                found.append(path)
            elif path.is_file() and not (path.name.startswith("part-") and path.suffix == ".parquet"):
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
