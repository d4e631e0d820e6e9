"""One partitioned Parquet asset per configured workflow: `amc/<workflow>`.

Materializing a partition asks the engine what the window needs (`monitor.windows.request_window`):
it lands the window's SUCCESS execution if there is one not yet landed; otherwise it enqueues an
execution (never a duplicate) and ends without a materialization, saying where the execution
stands. The landing sensor requests the partition again once AMC has finished.
"""

from datetime import timedelta

import dagster as dg

from amc_pipeline.config import PipelineConfig, Settings, WorkflowConfig
from amc_pipeline.defs.checks import data_check_specs, rows_check, schema_check
from amc_pipeline.defs.metadata import materialization
from amc_pipeline.defs.observations import emit_changes, workflow_asset_key
from amc_pipeline.defs.pack_landing import PACK_TAG, land_and_report
from amc_pipeline.defs.resources import AmcResource, StoreResource
from amc_pipeline.monitor.windows import Action, land_window, report_failure, request_window
from amc_pipeline.partitions import partitions_def, window_for
from amc_pipeline.results.schema_drift import schema_drift, table_drift
from amc_pipeline.results.storage import iceberg_settings, results_root
from amc_pipeline.sync import code_version

#: Run tag of the landing sensor's failure reports (value: the store's execution id).
REPORT_FAILURE_TAG = "amc/report_failure"


class MaterializeConfig(dg.Config):
    """Run config of a workflow asset."""

    force_new_execution: bool = False
    """Submit a new AMC execution for the window even if one exists (e.g. after the SQL changed)."""
    redownload: bool = False
    """Land the window's SUCCESS execution again even if it was already landed."""


#: Time between two windows of each cadence (a month at its longest).
CADENCE = {"daily": timedelta(days=1), "weekly": timedelta(days=7), "monthly": timedelta(days=31)}


def freshness_policy(workflow: WorkflowConfig) -> dg.FreshnessPolicy:
    """Stale when no window has landed for one cadence plus the grace period (warn at half the grace).

    `data_lag_days` does not add to it: it shifts which window is newest, not how often one lands.
    """
    grace = timedelta(hours=workflow.freshness_grace_hours)
    period = CADENCE[workflow.partitions]
    return dg.FreshnessPolicy.time_window(fail_window=period + grace, warn_window=period + grace / 2)


def _description(workflow: WorkflowConfig) -> str:
    source = f"```sql\n{workflow.sql.strip()}\n```" if workflow.sql else f"saved AMC workflow `{workflow.workflow_id}`"
    where = (f"{len(workflow.instance_ids)} instances ({', '.join(f'`{i}`' for i in workflow.instance_ids[:10])}"
             f"{', ...' if len(workflow.instance_ids) > 10 else ''}); one partition per window and instance"
             if workflow.fan_out else f"instance `{workflow.instance_id}`")
    intro = workflow.description or f"AMC workflow `{workflow.name}` on {where}."
    return f"{intro}\n\n{workflow.partitions.capitalize()} windows from {workflow.start_date}.\n\n{source}"


def _spec_labels(workflow: WorkflowConfig) -> tuple[dict[str, str], dict[str, str], str]:
    """The asset's tags, metadata and pool: per instance for a one-instance workflow; for a fanned-out
    one the instance is in each partition key (and each run's `amc/instance` tag), not the asset."""
    if workflow.fan_out:
        return ({**workflow.tags, "amc/fan_out": "true"},
                {"amc/workflow": workflow.name, "amc/instances": ", ".join(workflow.instance_ids)},
                f"amc-{workflow.name}")
    return ({**workflow.tags, "amc/instance": workflow.instance_id},
            {"amc/workflow": workflow.name, "amc/instance": workflow.instance_id},
            f"amc-{workflow.instance_id}")


def workflow_asset(workflow: WorkflowConfig, config: PipelineConfig) -> dg.AssetsDefinition:
    pipeline = config  # the inner function's `config` is its run config
    key = workflow_asset_key(workflow.name)
    pdef = partitions_def(workflow)
    tags, asset_metadata, pool = _spec_labels(workflow)
    policy = config.monitor
    storage = config.storage

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
                tags=tags,
                metadata=asset_metadata,
                skippable=True,
                freshness_policy=freshness_policy(workflow),
                code_version=code_version(workflow),  # follows the SQL: landed partitions go stale
            )
        ],
        partitions_def=pdef,
        # One partition per run: each window carries its own metadata, checks and AMC execution.
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=1),
        can_subset=True,
        check_specs=data_check_specs(workflow, pdef),
        pool=pool,
    )
    def _workflow_asset(
        context: dg.AssetExecutionContext,
        config: MaterializeConfig,
        amc: AmcResource,
        amc_store: StoreResource,
    ):
        store = amc_store.get_store()
        if PACK_TAG in context.run.tags:  # a pack's landing run over its partition range (docs/packing.md)
            leader = int(context.run.tags[PACK_TAG])
            pack_instance = pipeline.instance(store.get(store.get_attempt(leader).execution_id).instance_id)
            land_and_report(context, store, amc.get_client(), workflow, pack_instance, leader,
                            policy=policy, storage=storage, database_url=amc_store.database_url,
                            redownload=config.redownload)
            return
        if REPORT_FAILURE_TAG in context.run.tags:
            failed = report_failure(store, workflow, window_for(workflow, context.partition_key))
            if failed is None:
                context.log.info(f"{workflow.name}/{context.partition_key}: no longer failed; nothing to report")
                return
            attempt = failed.execution.attempt
            raise dg.Failure(description=failed.message, metadata={
                "status": attempt.status, "error_type": attempt.error_type or "",
                "reason": attempt.failure_reason or attempt.last_error or "",
                "amc/execution_id": attempt.amc_execution_id or "", "amc/attempt": attempt.attempt,
            }, allow_retries=False)
        window = window_for(workflow, context.partition_key)
        instance = pipeline.instance(window.instance_id)
        outcome = request_window(
            store, workflow, instance, window, client=amc.get_client,
            force_new=config.force_new_execution, redownload=config.redownload,
        )
        context.log.info(outcome.message)
        emit_changes(context, outcome.changes)
        if outcome.action is not Action.LAND:
            return
        if outcome.execution.attempt is not None and outcome.execution.attempt.pack_leader_id is not None:
            land_and_report(context, store, amc.get_client(), workflow, instance,
                            outcome.execution.attempt.pack_leader_id, policy=policy, storage=storage,
                            database_url=amc_store.database_url, redownload=config.redownload)
            return
        landed = land_window(store, amc.get_client(), instance, outcome.execution, policy,
                             data_dir=Settings.from_env().data_dir, results=results_root(storage),
                             iceberg=iceberg_settings(storage, amc_store.database_url), logger=context.log)
        schema = landed.landing.schema
        drift = (table_drift(landed.landing.table_name, landed.landing.previous_schema, schema)
                 if landed.landing.table_name else schema_drift(store, workflow.name, context.partition_key, schema))
        checks = [schema_check(drift),
                  rows_check(landed.landing.rows)]
        yield dg.MaterializeResult(metadata=materialization(outcome.execution, landed), check_results=checks)

    return _workflow_asset


def workflow_assets_defs(config: PipelineConfig) -> dg.Definitions:
    return dg.Definitions(assets=[workflow_asset(w, config) for w in config.workflows])
