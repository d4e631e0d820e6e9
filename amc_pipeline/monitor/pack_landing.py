"""Landing a pack: one download of the packed execution, split into each window's partition.

Why one landing for the pack (not one per window): every window's rows are in the same AMC result;
downloading it once per window would fetch the pack N times. The result is landed with the ordinary
code (download, convert typed from outputColumns) into a private folder, checked (every split value
inside the packed range, before anything is published), then each window is written and published
on its own, exactly like a single-window landing: a failure or a kill -9 leaves each partition whole,
the previous version or the new one. Each window records its own landing (rows, bytes, uri) under its
own lease, and the landing sensor retries the windows a failed pack landing left unlanded.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from amc_pipeline.amc.client import AmcClient
from amc_pipeline.config import InstanceConfig, MonitorConfig, WorkflowConfig
from amc_pipeline.monitor.windows import Landed
from amc_pipeline.partitions import window_for
from amc_pipeline.results.convert_parquet import DEFAULT_COMPRESSION, PREVIEW_ROWS
from amc_pipeline.results.iceberg import IcebergSettings
from amc_pipeline.results.landing import LandingResult, land_execution
from amc_pipeline.results.layout import hold_lock
from amc_pipeline.results.split import check_in_range, check_split_column, window_bounds, write_window
from amc_pipeline.results.storage import ResultsRoot, publisher, resolve_results_root
from amc_pipeline.store.records import Attempt, ExecutionView
from amc_pipeline.store.states import SUCCESS
from amc_pipeline.store.store import ExecutionStore

log = logging.getLogger(__name__)

#: The pack's own partition name inside its private results folder (never a real partition).
_PACK_KEY = "pack"


@dataclass(frozen=True)
class PackLanded:
    """What a pack landing produced: each window landed, with the packed execution it came from."""

    amc_execution_id: str
    leader_attempt_id: int
    #: "<first key>..<last key>" of every window of the pack.
    pack_range: str
    windows: list[tuple[ExecutionView, Landed]]
    #: Rows of the packed execution (the sum over windows, rows of windows no longer packed included).
    pack_rows: int
    #: AMC's running time of the packed execution (members carry none of their own).
    run_seconds: float = 0.0


def pack_of_attempt(store: ExecutionStore, leader_attempt_id: int) -> list[tuple[ExecutionView, Attempt]]:
    """(execution, attempt) of every window of the pack, the leader's first, then by window start."""
    leader = store.attempt_pairs([leader_attempt_id]).get(leader_attempt_id)
    if leader is None:
        raise ValueError(f"attempt {leader_attempt_id} does not exist")
    return [leader, *store.pack_members(leader_attempt_id)]


def _to_land(pairs: list[tuple[ExecutionView, Attempt]], redownload: bool) -> list[tuple[ExecutionView, Attempt]]:
    """The windows still riding on the pack whose result is not on disk (all of them with `redownload`)."""
    out = [(e, a) for e, a in pairs
           if e.live and e.current_attempt_id == a.id and a.status == SUCCESS
           and (redownload or e.landed_attempt_id != a.id)]
    return sorted(out, key=lambda p: p[0].window_start)


def land_pack(
    store: ExecutionStore,
    client: AmcClient,
    instance: InstanceConfig,
    workflow: WorkflowConfig,
    leader_attempt_id: int,
    policy: MonitorConfig,
    *,
    data_dir: Path,
    results: ResultsRoot | str | None = None,
    iceberg: IcebergSettings | None = None,
    redownload: bool = False,
    logger: Any = log,
    now: datetime | None = None,
) -> PackLanded:
    """Land every window of the pack led by `leader_attempt_id` that is SUCCESS and not landed yet.

    Raises (after recording the failure on each window not landed) when the result cannot be landed:
    a missing or mistyped split column, a value outside the packed range, a download or conversion
    error. Windows already published by this call stay landed and recorded.
    """
    if workflow.packing is None:
        raise ValueError(f"workflow {workflow.name!r} has no packing block; cannot land a pack")
    now = now or datetime.now(UTC)
    pairs = pack_of_attempt(store, leader_attempt_id)
    leader = pairs[0][1]
    windows = sorted((window_for(workflow, e.partition_key) for e, _ in pairs), key=lambda w: w.start_utc)
    pack_range = f"{windows[0].partition_key}..{windows[-1].partition_key}"
    to_land = _to_land(pairs, redownload)
    if not to_land or leader.amc_execution_id is None:
        return PackLanded(leader.amc_execution_id or "", leader.id, pack_range, [], 0)
    lease = now + timedelta(seconds=policy.landing_lease_seconds)
    land_attempts = {e.id: store.begin_landing(e.id, lease_until=lease) for e, _ in to_land}
    label = f"{workflow.name}/{pack_range}"
    logger.info(f"{label}: landing {len(to_land)} window(s) of packed AMC execution {leader.amc_execution_id}")
    landed: list[tuple[ExecutionView, Landed]] = []
    try:
        landed, pack_rows = _land(store, client, instance, workflow, leader, windows, to_land, land_attempts,
                                  data_dir=data_dir, results=results, iceberg=iceberg, logger=logger,
                                  label=label, landed=landed)
    except Exception as exc:
        done = {e.id for e, _ in landed}
        for e, _ in to_land:
            if e.id in done:
                continue
            delay = policy.landing_retry_seconds * 2 ** min(land_attempts[e.id] - 1, 6)
            store.record_land_failure(e.id, error=f"{type(exc).__name__}: {exc}"[:2000],
                                      next_land_at=datetime.now(UTC) + timedelta(seconds=delay), now=now)
        logger.error(f"{label}: landing the pack failed after {len(done)} of {len(to_land)} window(s): {exc}; "
                     f"each partition is whole (previous or new version) and the landing sensor retries")
        raise
    return PackLanded(leader.amc_execution_id, leader.id, pack_range, landed, pack_rows,
                      leader.execution_time_seconds or 0.0)


def _land(store, client, instance, workflow, leader, windows, to_land, land_attempts, *, data_dir, results,
          iceberg, logger, label, landed) -> tuple[list[tuple[ExecutionView, Landed]], int]:
    """Download and convert the pack once, check its range, then publish each window in turn."""
    assert workflow.packing is not None and leader.amc_execution_id is not None
    column = workflow.packing.split_column
    output_columns = json.loads(leader.output_columns) if leader.output_columns else []
    request_id = None
    if not output_columns:
        amc_exec = client.get_execution(instance, leader.amc_execution_id)
        request_id = amc_exec.request_id
        output_columns = [{"name": c.name, "dataType": c.data_type} for c in amc_exec.output_columns]
    check_split_column(output_columns, column, leader.amc_execution_id)
    root = results if isinstance(results, ResultsRoot) else resolve_results_root(
        results if results is not None else Path(data_dir) / "results")
    work = Path(data_dir) / "tmp" / f"landing-pack-{uuid.uuid4().hex[:12]}"
    work.mkdir(parents=True)
    lock = hold_lock(work / ".lock", mode=0o600)  # a dead landing's folder is removed by the next landing
    try:
        pack = land_execution(client, instance, leader.amc_execution_id, output_columns, data_dir=data_dir,
                              workflow=workflow.name, partition_key=_PACK_KEY, logger=logger,
                              results=work / "pack")
        parts = [Path(p) for p in pack.parquet_files]
        bounds = window_bounds(windows, pack.schema.field(column).type)
        pack_rows = check_in_range(parts, column, bounds, f"{label} (AMC execution {leader.amc_execution_id})")
        wanted = {e.partition_key for e, _ in to_land}
        by_key = {b.partition_key: b for b in bounds}
        for execution, attempt in to_land:
            started = time.perf_counter()
            key = execution.partition_key
            with publisher(root, data_dir=Path(data_dir), local_dir=work / "windows" / key, workflow=workflow.name,
                           partition_key=key, logger=logger, iceberg=iceberg) as staged:
                part = write_window(parts, column, by_key[key], pack.schema, staged.path_for(0),
                                    compression=DEFAULT_COMPRESSION, preview_rows=PREVIEW_ROWS)
                published = staged.commit(logger)
            store.record_landed(execution.id, attempt.id, rows=part.rows, bytes=published.bytes, uri=published.uri,
                                now=datetime.now(UTC))
            result = _window_result(pack, published, part.rows, part.preview, time.perf_counter() - started)
            landed.append((execution, Landed(result, request_id, land_attempts[execution.id])))
            logger.info(f"{workflow.name}/{key}: landed {part.rows} of the pack's {pack_rows} rows at {published.uri}")
        skipped = len(bounds) - len(wanted)
        if skipped:
            logger.info(f"{label}: {skipped} window(s) of the pack were not landed (landed already, cancelled "
                        f"or superseded on their own); their rows were left out")
        return landed, pack_rows
    finally:
        shutil.rmtree(work, ignore_errors=True)
        os.close(lock)


def _window_result(pack: LandingResult, published: Any, rows: int, preview: list[dict[str, Any]],
                   seconds: float) -> LandingResult:
    """One window's LandingResult: its own rows, files and URI; the pack's download figures."""
    schema: pa.Schema = pack.schema
    return replace(
        pack, rows=rows, bytes=published.bytes, uri=published.uri, preview=preview,
        parquet_files=list(published.parts), path=published.path, total_seconds=round(seconds, 3),
        schema=schema, mixed_window_seconds=published.mixed_window_seconds, mixed_window=published.mixed_window,
        upload_seconds=published.upload_seconds, table_name=published.table_name,
        snapshot_id=published.snapshot_id, previous_schema=published.previous_schema,
    )
