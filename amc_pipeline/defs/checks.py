"""Asset checks: data checks at landing, stuck and failed executions, and the job that runs them.

Why two kinds: `schema_matches_previous` and `has_rows` judge a landed window's data, so they are
reported with its materialization (per partition); `no_stuck_executions` and
`no_failed_executions` judge the store's view of every window of the workflow, so they are
evaluated by the `amc_execution_checks` job that `amc_checks_sensor` launches when what they would
say has changed in the store (per asset: they summarize every window of the workflow).
"""

import hashlib
import json
from datetime import UTC, datetime

import dagster as dg

from amc_pipeline.config import PipelineConfig, WorkflowConfig
from amc_pipeline.defs.observations import workflow_asset_key
from amc_pipeline.defs.resources import StoreResource
from amc_pipeline.health.status import check_fingerprints, failed_executions, stuck_executions
from amc_pipeline.results.schema_drift import SchemaDrift

SCHEMA_CHECK = "schema_matches_previous"
ROWS_CHECK = "has_rows"
CHECKS_JOB = "amc_execution_checks"
EXECUTION_CHECKS = ("no_stuck_executions", "no_failed_executions")
#: The health check on amc/execution_metrics (defined in health.py, run by the checks job).
HEALTH_CHECK_KEY = dg.AssetCheckKey(dg.AssetKey(["amc", "execution_metrics"]), "amc_pipeline_healthy")


def data_check_specs(workflow: WorkflowConfig, partitions_def: dg.PartitionsDefinition) -> list[dg.AssetCheckSpec]:
    key = workflow_asset_key(workflow.name)
    return [
        dg.AssetCheckSpec(SCHEMA_CHECK, asset=key, blocking=True, partitions_def=partitions_def,
                          description="Columns match the last landed partition (added, removed, retyped)."),
        dg.AssetCheckSpec(ROWS_CHECK, asset=key, partitions_def=partitions_def,
                          description="The window has rows (recent windows may be empty while AMC lags)."),
    ]


def schema_check(drift: SchemaDrift) -> dg.AssetCheckResult:
    if drift.compared_with is None:
        return dg.AssetCheckResult(check_name=SCHEMA_CHECK, passed=True,
                                   metadata={"note": "first landed partition; nothing to compare"})
    return dg.AssetCheckResult(
        check_name=SCHEMA_CHECK,
        passed=not drift.drifted,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "compared_with_partition": drift.compared_with,
            "columns_added": ", ".join(drift.added) or "none",
            "columns_removed": ", ".join(drift.removed) or "none",
            "columns_retyped": ", ".join(drift.retyped) or "none",
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


def _md_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def execution_checks(workflow: WorkflowConfig, config: PipelineConfig) -> list[dg.AssetChecksDefinition]:
    key = workflow_asset_key(workflow.name)

    @dg.asset_check(asset=key, name="no_stuck_executions",
                    description=f"No execution PENDING over {workflow.stuck_pending_minutes} min or RUNNING over "
                                f"{workflow.stuck_running_minutes} min.")
    def no_stuck_executions(amc_store: StoreResource) -> dg.AssetCheckResult:
        stuck = stuck_executions(amc_store.get_store(), workflow)
        return dg.AssetCheckResult(
            passed=not stuck,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"{len(stuck)} stuck execution(s)" if stuck else "nothing stuck",
            metadata={
                "stuck_count": len(stuck),
                "stuck": dg.MetadataValue.md(_md_table(
                    ["partition", "status", "AMC execution", "age (min)", "limit (min)"],
                    [[s.partition_key, s.status, s.amc_execution_id or "", s.age_minutes, s.limit_minutes]
                     for s in stuck])) if stuck else "none",
            },
        )

    @dg.asset_check(asset=key, name="no_failed_executions",
                    description="No window whose execution ended FAILED, TIMEOUT or CANCELLED for good.")
    def no_failed_executions(amc_store: StoreResource) -> dg.AssetCheckResult:
        failed = failed_executions(amc_store.get_store(), workflow,
                                   max_landing_attempts=config.monitor.max_landing_attempts)
        return dg.AssetCheckResult(
            passed=not failed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=(f"{len(failed)} failed window(s); first: {failed[0].partition_key} "
                         f"{failed[0].error_type}: {(failed[0].reason or '')[:200]}") if failed else "no failures",
            metadata={
                "failed_count": len(failed),
                "failed": dg.MetadataValue.md(_md_table(
                    ["partition", "status", "error type", "reason", "attempts", "AMC execution"],
                    [[f.partition_key, f.status, f.error_type or "", (f.reason or "").replace("|", "/")[:300],
                      f.attempts, f.amc_execution_id or ""] for f in failed])) if failed else "none",
            },
        )

    return [no_stuck_executions, no_failed_executions]


def checks_defs(config: PipelineConfig) -> dg.Definitions:
    """The stuck/failed checks of every workflow, the checks job and the sensor that keeps them current."""
    checks = [c for w in config.workflows for c in execution_checks(w, config)]
    check_keys = [k for c in checks for k in c.check_keys] + [HEALTH_CHECK_KEY]
    checks_job = dg.define_asset_job(CHECKS_JOB, selection=dg.AssetSelection.checks(*check_keys),
                                     description="Evaluate the stuck, failed and health checks.")

    by_workflow = {w.name: [dg.AssetCheckKey(workflow_asset_key(w.name), name) for name in EXECUTION_CHECKS]
                   for w in config.workflows}

    @dg.sensor(name="amc_checks_sensor", job=checks_job, default_status=dg.DefaultSensorStatus.RUNNING,
               minimum_interval_seconds=config.monitor.sensor_interval_seconds,
               description="Re-evaluates a workflow's stuck/failed checks (and the health check) when what "
                           "they would say has changed in the store; launches nothing when nothing changed.")
    def amc_checks_sensor(context: dg.SensorEvaluationContext, amc_store: StoreResource):
        in_flight = context.instance.get_runs(
            filters=dg.RunsFilter(job_name=CHECKS_JOB, statuses=[
                dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]), limit=1)
        if in_flight:
            # Leave the cursor: the next tick compares against what the last finished run evaluated.
            return dg.SkipReason(f"checks run {in_flight[0].run_id} still in flight")
        now = datetime.now(UTC)
        store = amc_store.get_store()
        current = check_fingerprints(store, config, now=now)
        # While executions are active, the health check also re-probes AMC every check_interval_seconds.
        if any(store.active_count(i.instance_id) for i in config.instances):
            current["_health"] += f":{int(now.timestamp()) // config.monitor.check_interval_seconds}"
        seen = json.loads(context.cursor) if context.cursor else {}
        changed = sorted(name for name, digest in current.items() if seen.get(name) != digest)
        if not changed:
            return dg.SkipReason("no check would change its answer")
        keys = [k for name in changed for k in by_workflow.get(name, [])]
        if "_health" in changed:
            keys.append(HEALTH_CHECK_KEY)
        context.update_cursor(json.dumps(current, sort_keys=True))
        if not keys:
            return dg.SkipReason(f"changes only for workflows no longer configured: {', '.join(changed)}")
        digest = hashlib.sha1(json.dumps(current, sort_keys=True).encode()).hexdigest()[:16]
        return dg.RunRequest(run_key=f"checks:{digest}", asset_check_keys=keys,
                             tags={"amc/checks_for": ",".join(changed)[:200]})

    return dg.Definitions(asset_checks=checks, jobs=[checks_job], sensors=[amc_checks_sensor])
