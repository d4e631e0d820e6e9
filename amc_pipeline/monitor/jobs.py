"""The Dagster side of the monitor: the `amc_monitor` job, its sensor, and `cancel_amc_executions`.

The engine (submit.py, poll.py) knows nothing of Dagster; these ops run it and turn each status change
into one AssetObservation on the workflow's asset, so the UI shows the execution's story.
"""

import hashlib
from datetime import UTC, datetime

import dagster as dg

from amc_pipeline.amc.resource import AmcResource
from amc_pipeline.config import PipelineConfig
from amc_pipeline.monitor.cancel import cancel_attempt
from amc_pipeline.monitor.events import PassReport, StatusChange
from amc_pipeline.monitor.poll import poll_due
from amc_pipeline.monitor.submit import submit_queued
from amc_pipeline.partitions import window_for
from amc_pipeline.resources import StoreResource

MONITOR_JOB = "amc_monitor"
CANCEL_JOB = "cancel_amc_executions"
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def emit_changes(context: dg.OpExecutionContext, changes: list[StatusChange]) -> None:
    for change in changes:
        context.log_event(
            dg.AssetObservation(
                asset_key=dg.AssetKey(["amc", change.workflow]),
                partition=change.partition_key,
                description=f"AMC execution {change.from_status} → {change.to_status}",
                metadata=change.metadata(),
            )
        )


def monitor_in_flight(instance: dg.DagsterInstance) -> dg.DagsterRun | None:
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=MONITOR_JOB, statuses=IN_FLIGHT), limit=1)
    return runs[0] if runs else None


def build_monitor_defs(config: PipelineConfig) -> tuple[dg.JobDefinition, dg.SensorDefinition, dg.JobDefinition]:
    """The monitor job, its sensor and the cancel job for this configuration."""
    pipeline = config

    @dg.op(description="Submit QUEUED executions to AMC within each instance's active and daily limits.")
    def submit_executions(context: dg.OpExecutionContext, amc: AmcResource, amc_store: StoreResource) -> None:
        store = amc_store.get_store()
        with amc.get_client() as client:
            report = submit_queued(store, client, pipeline, report=PassReport())
        emit_changes(context, report.changes)
        context.log.info(f"submit pass: {report.summary()}")

    @dg.op(
        ins={"after_submit": dg.In(dg.Nothing)},
        description="Check due PENDING/RUNNING executions (bounded concurrency; list pages when many).",
    )
    def poll_executions(context: dg.OpExecutionContext, amc: AmcResource, amc_store: StoreResource) -> None:
        store = amc_store.get_store()
        report = poll_due(store, lambda: amc.get_async_client(pipeline.monitor.concurrency), pipeline,
                          report=PassReport())
        store.record_heartbeat("poll", ok=not report.outage, detail=report.summary())
        emit_changes(context, report.changes)
        context.log.info(f"poll pass: {report.summary()}")

    @dg.job(
        name=MONITOR_JOB,
        description="One monitor pass: submit queued AMC executions, then check the due ones.",
        tags={"amc/monitor": "true"},
    )
    def amc_monitor():
        poll_executions(after_submit=submit_executions())

    @dg.sensor(
        name="amc_monitor_sensor",
        job=amc_monitor,
        minimum_interval_seconds=pipeline.monitor.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Requests one amc_monitor run when the store has a submit or status check due.",
    )
    def amc_monitor_sensor(context: dg.SensorEvaluationContext, amc_store: StoreResource):
        now = datetime.now(UTC)
        summary = amc_store.get_store().due_summary(now)
        if summary.submit_due + summary.poll_due + summary.ambiguous == 0:
            when = summary.next_due_at.isoformat(timespec="seconds") if summary.next_due_at else "nothing active"
            return dg.SkipReason(f"no AMC work due; next check: {when}")
        running = monitor_in_flight(context.instance)
        if running is not None:
            return dg.SkipReason(f"amc_monitor run {running.run_id} is already {running.status.value}")
        # Same due work → same key, so a daemon restart cannot launch it twice; the 5-minute bucket lets
        # work that a failed run left untouched be tried again. newest_due_at moves whenever a pass
        # reschedules a due attempt, so the next round of polls of the same executions gets a new key.
        bucket = int(now.timestamp()) // 300
        newest = summary.newest_due_at.isoformat() if summary.newest_due_at else ""
        digest = hashlib.sha1(f"{summary.oldest_due_ids}|{newest}|{bucket}".encode()).hexdigest()[:16]
        return dg.RunRequest(
            run_key=f"monitor:{digest}",
            tags={"amc/submit_due": str(summary.submit_due), "amc/poll_due": str(summary.poll_due)},
        )

    class CancelConfig(dg.Config):
        """Either a workflow and its partition keys, or store execution ids."""

        workflow: str | None = None
        partition_keys: list[str] = []
        execution_ids: list[int] = []
        reason: str = "cancelled by request"

    @dg.op(description="Cancel executions at AMC and in the store.")
    def cancel_executions(
        context: dg.OpExecutionContext, config: CancelConfig, amc: AmcResource, amc_store: StoreResource
    ) -> None:
        store = amc_store.get_store()
        targets = []
        if config.workflow:
            try:
                workflow = pipeline.workflow(config.workflow)
            except KeyError:
                raise dg.Failure(f"workflow: unknown workflow {config.workflow!r}") from None
            for key in config.partition_keys:
                window_for(workflow, key)  # raises a clear error for a key outside the range
                execution = store.get_live(workflow.name, key)
                if execution is None:
                    context.log.warning(f"{workflow.name}/{key}: no execution to cancel")
                else:
                    targets.append(execution)
        elif config.partition_keys:
            raise dg.Failure("partition_keys: give workflow too")
        targets += [store.get(i) for i in config.execution_ids]
        if not targets:
            raise dg.Failure("give workflow and partition_keys, or execution_ids")
        now = datetime.now(UTC)
        changes = []
        with amc.get_client() as client:
            for execution in targets:
                attempt = execution.attempt
                if attempt is None or attempt.status not in ("QUEUED", "PENDING", "RUNNING"):
                    context.log.info(f"{execution.workflow}/{execution.partition_key}: already "
                                     f"{attempt.status if attempt else 'without attempt'}; nothing to cancel")
                    continue
                change = cancel_attempt(store, client, pipeline.instance(execution.instance_id), execution,
                                        attempt, now, reason=config.reason)
                if change:
                    changes.append(change)
        emit_changes(context, changes)
        context.log.info(f"cancelled {len(changes)} of {len(targets)} executions")

    @dg.job(name=CANCEL_JOB, description="Cancel AMC executions (by workflow and partitions, or by id).")
    def cancel_amc_executions():
        cancel_executions()

    return amc_monitor, amc_monitor_sensor, cancel_amc_executions
