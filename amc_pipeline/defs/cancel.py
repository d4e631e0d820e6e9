"""The `cancel_amc_executions` job: cancel windows at AMC and in the store, by workflow or by id."""

from datetime import UTC, datetime

import dagster as dg

from amc_pipeline.config import PipelineConfig
from amc_pipeline.defs.observations import emit_changes
from amc_pipeline.defs.resources import AmcResource, StoreResource
from amc_pipeline.monitor.cancel import cancel_executions as cancel_in_engine
from amc_pipeline.monitor.cancel import cancel_targets

CANCEL_JOB = "cancel_amc_executions"


class CancelConfig(dg.Config):
    """Either a workflow and its partition keys, or store execution ids."""

    workflow: str | None = None
    partition_keys: list[str] = []
    execution_ids: list[int] = []
    reason: str = "cancelled by request"


def cancel_defs(pipeline: PipelineConfig) -> dg.Definitions:
    @dg.op(description="Cancel executions at AMC and in the store.")
    def cancel_executions(
        context: dg.OpExecutionContext, config: CancelConfig, amc: AmcResource, amc_store: StoreResource
    ) -> None:
        store = amc_store.get_store()
        try:
            targets, notes = cancel_targets(store, pipeline, workflow=config.workflow,
                                            partition_keys=config.partition_keys,
                                            execution_ids=config.execution_ids)
        except ValueError as exc:
            raise dg.Failure(str(exc)) from None
        for note in notes:
            context.log.warning(note)
        if not targets:
            raise dg.Failure("give workflow and partition_keys, or execution_ids")
        changes, skipped = cancel_in_engine(store, amc.get_client(), pipeline, targets, reason=config.reason,
                                            now=datetime.now(UTC))
        for note in skipped:
            context.log.info(note)
        emit_changes(context, changes)
        context.log.info(f"cancelled {len(changes)} of {len(targets)} executions")

    @dg.job(name=CANCEL_JOB, description="Cancel AMC executions (by workflow and partitions, or by id).")
    def cancel_amc_executions():
        cancel_executions()

    return dg.Definitions(jobs=[cancel_amc_executions])
