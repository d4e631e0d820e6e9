"""One partitioned Parquet asset per configured workflow, and its data checks.

Materializing a partition lands the window's SUCCESS execution if there is one not yet landed;
otherwise it enqueues an execution (never a duplicate) and ends without a materialization, saying
where the execution stands. The landing sensor requests the partition again once AMC has finished.
"""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from amc_pipeline.amc.resource import AmcResource
from amc_pipeline.config import PipelineConfig, Settings, WorkflowConfig
from amc_pipeline.monitor.cancel import cancel_attempt
from amc_pipeline.monitor.jobs import emit_changes
from amc_pipeline.partitions import partitions_def, window_for
from amc_pipeline.resources import StoreResource
from amc_pipeline.results.landing import LandingResult, land_execution
from amc_pipeline.store.records import ExecutionView
from amc_pipeline.store.store import ExecutionStore

SCHEMA_CHECK = "schema_matches_previous"
ROWS_CHECK = "has_rows"
PREVIEW_ROWS = 20


class MaterializeConfig(dg.Config):
    """Run config of a workflow asset."""

    force_new_execution: bool = False
    """Submit a new AMC execution for the window even if one exists (e.g. after the SQL changed)."""
    redownload: bool = False
    """Land the window's SUCCESS execution again even if it was already landed."""


def asset_key(workflow: WorkflowConfig) -> dg.AssetKey:
    return dg.AssetKey(["amc", workflow.name])


def _description(workflow: WorkflowConfig) -> str:
    source = f"```sql\n{workflow.sql.strip()}\n```" if workflow.sql else f"saved AMC workflow `{workflow.workflow_id}`"
    intro = workflow.description or f"AMC workflow `{workflow.name}` on instance `{workflow.instance_id}`."
    return f"{intro}\n\n{workflow.partitions.capitalize()} windows from {workflow.start_date}.\n\n{source}"


def _arrow_to_dagster_type(dtype: pa.DataType) -> str:
    return str(dtype)


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name=f.name, type=_arrow_to_dagster_type(f.type)) for f in schema]
    )


def preview_table(schema: pa.Schema, rows: list[dict[str, Any]]) -> dg.TableMetadataValue:
    records = [
        dg.TableRecord({k: (v if isinstance(v, str | int | float | bool) or v is None else str(v))
                        for k, v in row.items()})
        for row in rows[:PREVIEW_ROWS]
    ]
    cols = [dg.TableColumn(name=f.name, type="string" if pa.types.is_temporal(f.type) else
                           ("int" if pa.types.is_integer(f.type) else
                            "float" if pa.types.is_floating(f.type) else
                            "bool" if pa.types.is_boolean(f.type) else "string"))
            for f in schema]
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=cols))


def previous_landed_schema(store: ExecutionStore, workflow: str, partition_key: str) -> tuple[str, pa.Schema] | None:
    """Schema of the most recently landed other partition of the workflow (for drift checks)."""
    landed = [e for e in store.list_executions(workflow=workflow, live_only=True, limit=500)
              if e.landed_at is not None and e.partition_key != partition_key and e.uri]
    landed.sort(key=lambda e: e.landed_at, reverse=True)
    for execution in landed:
        folder = Path(url2pathname(urlparse(execution.uri).path))
        parts = sorted(folder.glob("part-*.parquet"))
        if parts:
            return execution.partition_key, pq.read_schema(parts[0])
    return None


def schema_check(store: ExecutionStore, workflow: str, partition_key: str, schema: pa.Schema) -> dg.AssetCheckResult:
    previous = previous_landed_schema(store, workflow, partition_key)
    if previous is None:
        return dg.AssetCheckResult(check_name=SCHEMA_CHECK, passed=True,
                                   metadata={"note": "first landed partition; nothing to compare"})
    prev_key, prev = previous
    before = {f.name: str(f.type) for f in prev}
    after = {f.name: str(f.type) for f in schema}
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    retyped = sorted(f"{n}: {before[n]} → {after[n]}" for n in set(before) & set(after) if before[n] != after[n])
    return dg.AssetCheckResult(
        check_name=SCHEMA_CHECK,
        passed=not (added or removed or retyped),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "compared_with_partition": prev_key,
            "columns_added": ", ".join(added) or "none",
            "columns_removed": ", ".join(removed) or "none",
            "columns_retyped": ", ".join(retyped) or "none",
        },
    )


def rows_check(rows: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=ROWS_CHECK,
        passed=rows > 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "rows": rows,
            "note": "AMC's data lags by days: recent windows can be empty until it catches up"
            if rows == 0 else "ok",
        },
    )


def materialization(execution: ExecutionView, landing: LandingResult, request_id: str | None) -> dict[str, Any]:
    attempt = execution.attempt
    assert attempt is not None
    queue_seconds = (
        (attempt.submitted_at - execution.requested_at).total_seconds()
        if attempt.submitted_at and execution.requested_at else 0.0
    )
    return {
        "dagster/row_count": dg.MetadataValue.int(landing.rows),
        "dagster/partition_row_count": dg.MetadataValue.int(landing.rows),
        "dagster/size_bytes": dg.MetadataValue.int(landing.bytes),
        "dagster/uri": dg.MetadataValue.path(landing.uri),
        "dagster/column_schema": column_schema(landing.schema),
        "amc/execution_id": dg.MetadataValue.text(attempt.amc_execution_id or ""),
        "amc/attempt": dg.MetadataValue.int(attempt.attempt),
        "amc/queue_seconds": dg.MetadataValue.float(float(queue_seconds)),
        "amc/run_seconds": dg.MetadataValue.float(float(attempt.execution_time_seconds or 0.0)),
        "amc/download_seconds": dg.MetadataValue.float(round(landing.download_seconds, 3)),
        "amc/files": dg.MetadataValue.int(landing.files),
        "amc/request_id": dg.MetadataValue.text(request_id or attempt.amc_request_id or ""),
        "preview": preview_table(landing.schema, landing.preview),
    }


def build_workflow_asset(workflow: WorkflowConfig, config: PipelineConfig) -> dg.AssetsDefinition:
    key = asset_key(workflow)
    instance = config.instance(workflow.instance_id)
    policy = config.monitor

    pdef = partitions_def(workflow)
    # A multi_asset with can_subset=True: a run that only enqueues yields no materialization, and then
    # no check results either, which a plain @asset with check_specs would refuse.
    @dg.multi_asset(
        name=f"amc__{workflow.name}",
        specs=[
            dg.AssetSpec(
                key=key,
                group_name="amc",
                description=_description(workflow),
                kinds={"amc", "parquet"},
                owners=list(workflow.owners),
                tags={**workflow.tags, "amc/instance": workflow.instance_id},
                metadata={"amc/workflow": workflow.name, "amc/instance": workflow.instance_id},
                skippable=True,
            )
        ],
        partitions_def=pdef,
        # One partition per run: each window carries its own metadata, checks and AMC execution.
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=1),
        can_subset=True,
        check_specs=[
            dg.AssetCheckSpec(SCHEMA_CHECK, asset=key, blocking=True, partitions_def=pdef,
                              description="Columns match the last landed partition (added, removed, retyped)."),
            dg.AssetCheckSpec(ROWS_CHECK, asset=key, partitions_def=pdef,
                              description="The window has rows (recent windows may be empty while AMC lags)."),
        ],
        pool=f"amc-{workflow.instance_id}",
    )
    def _workflow_asset(
        context: dg.AssetExecutionContext,
        config: MaterializeConfig,
        amc: AmcResource,
        amc_store: StoreResource,
    ):
        store = amc_store.get_store()
        partition_key = context.partition_key
        window = window_for(workflow, partition_key)
        now = datetime.now(UTC)
        execution = store.get_live(workflow.name, partition_key)

        if config.force_new_execution or (execution is not None and execution.attempt is not None
                                          and execution.attempt.status in ("FAILED", "CANCELLED", "TIMEOUT")):
            previous = execution
            execution, _ = store.enqueue(
                workflow=workflow.name, instance_id=workflow.instance_id, partition_key=partition_key,
                window_start=window.start_utc, window_end=window.end_utc, force_new=True, now=now,
            )
            why = "forced by run config" if config.force_new_execution else (
                f"the previous execution ended {previous.attempt.status}")
            context.log.info(f"{workflow.name}/{partition_key}: new AMC execution queued ({why}); "
                             f"the landing sensor materializes this partition when AMC finishes")
            active = ("QUEUED", "PENDING", "RUNNING")
            if previous is not None and previous.attempt and previous.attempt.status in active:
                with amc.get_client() as client:
                    change = cancel_attempt(store, client, instance, previous, previous.attempt, now,
                                            reason="superseded by a forced new execution")
                if change:
                    emit_changes(context, [change])
            return

        if execution is None:
            execution, created = store.enqueue(
                workflow=workflow.name, instance_id=workflow.instance_id, partition_key=partition_key,
                window_start=window.start_utc, window_end=window.end_utc, now=now,
            )
            context.log.info(
                f"{workflow.name}/{partition_key}: {'queued a new' if created else 'found a queued'} AMC "
                f"execution for {window.start_local:%Y-%m-%d %H:%M} – {window.end_local:%Y-%m-%d %H:%M} "
                f"{window.timezone}; no materialization yet. The monitor submits it within the instance's "
                f"limits and the landing sensor materializes this partition when AMC finishes."
            )
            return

        attempt = execution.attempt
        assert attempt is not None
        if attempt.status != "SUCCESS":
            age = (now - (attempt.status_changed_at or execution.requested_at)).total_seconds() / 60
            context.log.info(
                f"{workflow.name}/{partition_key}: AMC execution {attempt.amc_execution_id or '(not yet submitted)'}"
                f" attempt {attempt.attempt} is {attempt.status} for {age:.0f} min; no materialization yet"
            )
            return
        if execution.landed_attempt_id == attempt.id and not config.redownload:
            context.log.info(
                f"{workflow.name}/{partition_key}: already landed at {execution.landed_at:%Y-%m-%d %H:%M} UTC "
                f"({execution.rows} rows, {execution.uri}); set redownload: true to fetch it again"
            )
            return

        yield from _land(context, store, amc, execution, now)

    def _land(context, store: ExecutionStore, amc: AmcResource, execution: ExecutionView, now: datetime):
        attempt = execution.attempt
        partition_key = execution.partition_key
        output_columns = json.loads(attempt.output_columns) if attempt.output_columns else []
        data_dir = Settings.from_env().data_dir
        request_id = None
        land_attempt = store.begin_landing(
            execution.id, lease_until=now + timedelta(seconds=policy.landing_lease_seconds))
        context.log.info(f"{workflow.name}/{partition_key}: landing attempt {land_attempt} of AMC execution "
                         f"{attempt.amc_execution_id}")
        try:
            with amc.get_client() as client:
                if not output_columns:
                    amc_exec = client.get_execution(instance, attempt.amc_execution_id)
                    request_id = amc_exec.request_id
                    output_columns = [{"name": c.name, "dataType": c.data_type} for c in amc_exec.output_columns]
                landing = land_execution(
                    client, instance, attempt.amc_execution_id, output_columns,
                    data_dir=data_dir, workflow=workflow.name, partition_key=partition_key,
                    logger=context.log,
                )
        except Exception as exc:
            store.record_land_failure(
                execution.id, error=f"{type(exc).__name__}: {exc}"[:2000],
                next_land_at=datetime.now(UTC) + timedelta(
                    seconds=policy.landing_retry_seconds * 2 ** min(land_attempt - 1, 6)),
                now=now,
            )
            context.log.error(f"{workflow.name}/{partition_key}: landing attempt {land_attempt} failed: {exc}; "
                              f"the previous version (if any) is intact and the landing sensor retries")
            raise
        checks = [schema_check(store, workflow.name, partition_key, landing.schema), rows_check(landing.rows)]
        store.record_landed(execution.id, attempt.id, rows=landing.rows, bytes=landing.bytes,
                            uri=landing.uri, now=datetime.now(UTC))
        context.log.info(f"{workflow.name}/{partition_key}: landed {landing.rows} rows in {landing.files} "
                         f"file(s) at {landing.uri}")
        yield dg.MaterializeResult(metadata=materialization(execution, landing, request_id), check_results=checks)

    return _workflow_asset


def build_workflow_assets(config: PipelineConfig) -> list[dg.AssetsDefinition]:
    return [build_workflow_asset(w, config) for w in config.workflows]
