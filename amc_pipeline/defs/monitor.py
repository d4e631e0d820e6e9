"""The `amc_monitor` job (adopt, submit, then poll) and `amc_monitor_sensor`, which launches it when work is due.

The engine (`monitor/submit.py`, `monitor/poll.py`) knows nothing of Dagster; these ops run one pass
of it and report each status change as an observation on the workflow's asset.
"""

import hashlib
from datetime import UTC, datetime

import dagster as dg

from amc_pipeline.config import PipelineConfig
from amc_pipeline.defs.adoption import adoption_sensors
from amc_pipeline.defs.observations import emit_changes
from amc_pipeline.defs.resources import AmcResource, StoreResource
from amc_pipeline.health.status import account_beat
from amc_pipeline.monitor.adopt import adopt_executions as adopt_pass
from amc_pipeline.monitor.events import PassReport
from amc_pipeline.monitor.poll import poll_due
from amc_pipeline.monitor.submit import submit_queued
from amc_pipeline.store.store import ExecutionStore

MONITOR_JOB = "amc_monitor"
IN_FLIGHT_RUNS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
#: Due work unchanged for this long gets a new run key, so work a failed run left untouched is retried.
RUN_KEY_BUCKET_SECONDS = 300


def monitor_in_flight(instance: dg.DagsterInstance) -> dg.DagsterRun | None:
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=MONITOR_JOB, statuses=IN_FLIGHT_RUNS), limit=1)
    return runs[0] if runs else None


def record_account_beats(store: ExecutionStore, report: PassReport) -> None:
    """`account:<name>` heartbeats: whether each account this pass used was served or refused."""
    for name in sorted(report.accounts_seen | set(report.refused_accounts)):
        refused = report.refused_accounts.get(name)
        store.record_heartbeat(account_beat(name), ok=refused is None, detail=refused or "credentials accepted")


def monitor_defs(config: PipelineConfig) -> dg.Definitions:
    @dg.op(description="Adopt executions AMC schedules or other tools started for known windows (by workflowId).")
    def adopt_executions(context: dg.OpExecutionContext, amc: AmcResource, amc_store: StoreResource) -> None:
        if not any(w.adopts for w in config.workflows):
            return
        report = adopt_pass(amc_store.get_store(), amc.get_client(), config)
        for message in report.refused:
            context.log.warning(message)
        emit_changes(context, report.changes)
        context.log.info(f"adoption pass: adopted={report.adopted} in_flight={report.in_flight} "
                         f"waiting={report.waiting} refused={len(report.refused)} {report.summary()}")

    @dg.op(ins={"after_adopt": dg.In(dg.Nothing)},
           description="Submit QUEUED executions to AMC within each instance's and account's limits, "
                       "round-robin over instances and workflows.",
           out=dg.Out(dict, description="Accounts whose credentials were refused -> why."))
    def submit_executions(context: dg.OpExecutionContext, amc: AmcResource, amc_store: StoreResource) -> dict:
        store = amc_store.get_store()
        report = submit_queued(store, amc.get_client(), config, report=PassReport())
        record_account_beats(store, report)
        emit_changes(context, report.changes)
        context.log.info(f"submit pass: {report.summary()}")
        return dict(report.refused_accounts)

    @dg.op(description="Check due PENDING/RUNNING executions (bounded concurrency; list pages when many); "
                       "fails the run, after every other account's work, if an account's credentials were refused.")
    def poll_executions(context: dg.OpExecutionContext, amc: AmcResource, amc_store: StoreResource,
                        refused_at_submit: dict) -> None:
        store = amc_store.get_store()
        report = poll_due(store, lambda: amc.get_async_client(config.monitor.concurrency), config,
                          report=PassReport())
        refused = {**refused_at_submit, **report.refused_accounts}
        outage = report.outage and not refused  # a refused account is reported as itself, below
        store.record_heartbeat("poll", ok=not outage, detail=report.summary())
        record_account_beats(store, report)
        emit_changes(context, report.changes)
        context.log.info(f"poll pass: {report.summary()} token_refreshes={amc.refreshes_by_account()}")
        if refused:
            raise dg.Failure(
                description="Login with Amazon refused the credentials of "
                + "; ".join(f"account {name} (instances {', '.join(i.instance_id for i in config.instances_of(name))})"
                            f": {why}" for name, why in sorted(refused.items()))
                + ". Their queued executions wait and their running ones are not seen until the account's "
                  "environment variables hold working credentials; other accounts were served.",
                metadata={"refused_accounts": ", ".join(sorted(refused))}, allow_retries=False)

    @dg.job(
        name=MONITOR_JOB,
        description="One monitor pass: submit queued AMC executions, then check the due ones.",
        tags={"amc/monitor": "true"},
    )
    def amc_monitor():
        poll_executions(refused_at_submit=submit_executions(after_adopt=adopt_executions()))

    @dg.sensor(
        name="amc_monitor_sensor",
        job=amc_monitor,
        minimum_interval_seconds=config.monitor.sensor_interval_seconds,
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
        # Same due work → same key, so a daemon restart cannot launch it twice; the bucket lets work
        # that a failed run left untouched be tried again. newest_due_at moves whenever a pass
        # reschedules a due attempt, so the next round of polls of the same executions gets a new key.
        bucket = int(now.timestamp()) // RUN_KEY_BUCKET_SECONDS
        newest = summary.newest_due_at.isoformat() if summary.newest_due_at else ""
        digest = hashlib.sha1(f"{summary.oldest_due_ids}|{newest}|{bucket}".encode()).hexdigest()[:16]
        return dg.RunRequest(
            run_key=f"monitor:{digest}",
            tags={"amc/submit_due": str(summary.submit_due), "amc/poll_due": str(summary.poll_due)},
        )

    sensors = [amc_monitor_sensor, *adoption_sensors(config, amc_monitor)]
    return dg.Definitions(jobs=[amc_monitor], sensors=sensors)
