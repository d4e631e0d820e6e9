"""The Dagster side of packing: one landing run per pack, one materialization per window.

Why a partition-range run: Dagster 1.13's `MaterializeResult` has no partition of its own, so a run
that lands many partitions reports each one as an `AssetMaterialization` with its partition (own
`dagster/row_count`, URI, schema, preview, and the packed execution's id) plus the per-partition
data checks as `AssetCheckEvaluation`s. The landing sensor targets the pack's partition range
(`dagster/asset_partition_range_start`/`_end` tags), so the run shows against every window it lands
and a failed landing marks them all Failed in the partition bar.
"""

from collections.abc import Callable, Iterable
from typing import Any

import dagster as dg

from amc_pipeline.config import Settings, WorkflowConfig
from amc_pipeline.defs.checks import rows_check, schema_check
from amc_pipeline.defs.metadata import materialization
from amc_pipeline.defs.observations import workflow_asset_key
from amc_pipeline.monitor.pack_landing import PackLanded, land_pack, pack_of_attempt
from amc_pipeline.partition_keys import split_key
from amc_pipeline.results.schema_drift import schema_drift, table_drift
from amc_pipeline.results.storage import iceberg_settings, results_root
from amc_pipeline.store.records import ExecutionView
from amc_pipeline.store.store import ExecutionStore

#: Run tag of a pack's landing run: the pack's leading attempt id.
PACK_TAG = "amc/pack"


def _run_ended_early(instance: dg.DagsterInstance, run_key: str) -> bool:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": run_key}), limit=1)
    return bool(runs) and runs[0].status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def pack_landing_requests(
    store: ExecutionStore,
    instance: dg.DagsterInstance,
    landable: Iterable[ExecutionView],
    job_name: Callable[[str], str],
    workflows: set[str],
) -> tuple[list[ExecutionView], list[dg.RunRequest]]:
    """Split the landable windows into single ones (returned) and one range run request per pack.

    Packs of workflows not in `workflows` are left alone, as single windows are. Run key
    `land-pack:<leading attempt>:<n>`, n one more than the most landing attempts any of its windows
    has used, so a pack whose landing failed is asked again under a new key after its backoff.
    A run with the key that ended before it could count its attempt is counted here, as for windows.
    """
    singles: list[ExecutionView] = []
    packs: dict[int, list[ExecutionView]] = {}
    for execution in landable:
        leader = execution.attempt.pack_leader_id if execution.attempt is not None else None
        if leader is None:
            singles.append(execution)
        elif execution.workflow in workflows:
            packs.setdefault(leader, []).append(execution)
    requests = []
    for leader, windows in packs.items():
        run_key = f"land-pack:{leader}:{max(e.land_attempts for e in windows) + 1}"
        if _run_ended_early(instance, run_key):
            for e in windows:
                store.begin_landing(e.id)
                store.record_land_failure(e.id, error=f"landing run for {run_key} ended before landing",
                                          next_land_at=None)
            continue
        # The range covers the whole pack, even when this tick's page of landable windows held part of it.
        covered = sorted((e for e, _ in pack_of_attempt(store, leader) if e.live), key=lambda e: e.window_start)
        first, last = covered[0], covered[-1]
        tags = {"amc/instance": first.instance_id, "amc/landing": "true", PACK_TAG: str(leader)}
        if split_key(first.partition_key)[1] is None:
            requests.append(dg.RunRequest(run_key=run_key, job_name=job_name(first.workflow), tags={
                **tags, "dagster/asset_partition_range_start": first.partition_key,
                "dagster/asset_partition_range_end": last.partition_key}))
        else:
            # A fanned-out workflow's keys are window|instance: Dagster runs no range over a multi-partition
            # key, so the run names the pack's first window and the asset lands the whole pack (PACK_TAG).
            requests.append(dg.RunRequest(run_key=run_key, job_name=job_name(first.workflow),
                                          partition_key=first.partition_key, tags=tags))
    return singles, requests


def _evaluation(asset_key: dg.AssetKey, partition: str, result: dg.AssetCheckResult) -> dg.AssetCheckEvaluation:
    """A check result of one partition of a range run (a run-level result would name no partition)."""
    assert result.check_name is not None
    return dg.AssetCheckEvaluation(
        asset_key=asset_key, check_name=result.check_name, passed=result.passed,
        metadata=result.metadata, severity=result.severity, description=result.description, partition=partition,
    )


def report_pack(context: Any, store: ExecutionStore, workflow: WorkflowConfig, packed: PackLanded) -> None:
    """Log one materialization (and its data checks) per window the pack landing published."""
    key = workflow_asset_key(workflow.name)
    for execution, landed in packed.windows:
        landing = landed.landing
        meta = materialization(execution, landed)
        meta.update({
            "amc/execution_id": dg.MetadataValue.text(packed.amc_execution_id),
            "amc/packed_execution": dg.MetadataValue.text(packed.amc_execution_id),
            "amc/pack_range": dg.MetadataValue.text(packed.pack_range),
            "amc/pack_rows": dg.MetadataValue.int(packed.pack_rows),
            "amc/run_seconds": dg.MetadataValue.float(float(packed.run_seconds)),
        })
        context.log_event(dg.AssetMaterialization(asset_key=key, partition=execution.partition_key, metadata=meta))
        drift = (table_drift(landing.table_name, landing.previous_schema, landing.schema) if landing.table_name
                 else schema_drift(store, workflow.name, execution.partition_key, landing.schema))
        for result in (schema_check(drift), rows_check(landing.rows)):
            context.log_event(_evaluation(key, execution.partition_key, result))
    context.log.info(f"{workflow.name}/{packed.pack_range}: {len(packed.windows)} partition(s) landed from packed "
                     f"AMC execution {packed.amc_execution_id} ({packed.pack_rows} rows)")


def land_and_report(context: Any, store: ExecutionStore, client: Any, workflow: WorkflowConfig, instance: Any,
                    leader_attempt_id: int, *, policy: Any, storage: Any, database_url: str,
                    redownload: bool = False) -> None:
    """Land the pack (monitor/pack_landing.py) and report each window it published."""
    packed = land_pack(store, client, instance, workflow, leader_attempt_id, policy,
                       data_dir=Settings.from_env().data_dir, results=results_root(storage),
                       iceberg=iceberg_settings(storage, database_url), redownload=redownload, logger=context.log)
    if not packed.windows:
        context.log.info(f"{workflow.name}: nothing of the pack led by attempt {leader_attempt_id} is left to land")
    report_pack(context, store, workflow, packed)
