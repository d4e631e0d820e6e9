"""Asset checks: data checks at landing, stuck and failed executions, and the job that runs them.

Why two kinds: `schema_matches_previous` and `has_rows` judge a landed window's data, so they are
reported with its materialization (per partition); `no_stuck_executions` and
`no_failed_executions` judge the store's view of every window of the workflow, so they are
reported by `amc_checks_sensor` within the tick in which what they would say changes in the store
(runless evaluations, per asset: they summarize every window of the workflow). The
`amc_execution_checks` job evaluates the same answers on demand, and the health check, which
probes AMC, in a run the sensor launches when the health problems change.
"""

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from amc_pipeline.config import PipelineConfig, WorkflowConfig
from amc_pipeline.defs.observations import workflow_asset_key
from amc_pipeline.defs.resources import StoreResource
from amc_pipeline.health.status import (
    FailedExecution,
    StuckExecution,
    failed_executions,
    findings,
    health_digest,
    stuck_executions,
)
from amc_pipeline.partition_keys import split_key
from amc_pipeline.results.schema_drift import SchemaDrift

SCHEMA_CHECK = "schema_matches_previous"
ROWS_CHECK = "has_rows"
CHECKS_JOB = "amc_execution_checks"
STUCK_CHECK = "no_stuck_executions"
FAILED_CHECK = "no_failed_executions"
EXECUTION_CHECKS = (STUCK_CHECK, FAILED_CHECK)
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


@dataclass(frozen=True)
class CheckAnswer:
    """What a stuck/failed check says, whoever evaluates it (the checks job or the checks sensor)."""

    passed: bool
    severity: dg.AssetCheckSeverity
    description: str
    metadata: dict[str, Any]

    def result(self) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=self.passed, severity=self.severity, description=self.description,
                                   metadata=self.metadata)

    def evaluation(self, key: dg.AssetCheckKey) -> dg.AssetCheckEvaluation:
        return dg.AssetCheckEvaluation(asset_key=key.asset_key, check_name=key.name, passed=self.passed,
                                       severity=self.severity, description=self.description,
                                       metadata=self.metadata)


def _instances(ids: Iterable[str]) -> str:
    """`instance amcx` or `3 instances (amcx, amcy, amcz)`: the checks say where, for fanned-out workflows."""
    unique = sorted(set(ids))
    if len(unique) == 1:
        return f"instance {unique[0]}"
    return f"{len(unique)} instances ({', '.join(unique[:5])}{', ...' if len(unique) > 5 else ''})"


def stuck_answer(stuck: list[StuckExecution]) -> CheckAnswer:
    return CheckAnswer(
        passed=not stuck,
        severity=dg.AssetCheckSeverity.WARN,
        description=(f"{len(stuck)} stuck execution(s) on {_instances(s.instance_id for s in stuck)}"
                     if stuck else "nothing stuck"),
        metadata={
            "stuck_count": len(stuck),
            "stuck": dg.MetadataValue.md(_md_table(
                ["window", "instance", "status", "AMC execution", "age (min)", "limit (min)"],
                [[split_key(s.partition_key)[0], s.instance_id, s.status, s.amc_execution_id or "", s.age_minutes,
                  s.limit_minutes] for s in stuck])) if stuck else "none",
        },
    )


def failed_answer(failed: list[FailedExecution]) -> CheckAnswer:
    return CheckAnswer(
        passed=not failed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(f"{len(failed)} failed window(s) on {_instances(f.instance_id for f in failed)}; first: "
                     f"{split_key(failed[0].partition_key)[0]} on {failed[0].instance_id} "
                     f"{failed[0].error_type}: {(failed[0].reason or '')[:200]}") if failed else "no failures",
        metadata={
            "failed_count": len(failed),
            "failed": dg.MetadataValue.md(_md_table(
                ["window", "instance", "status", "error type", "reason", "attempts", "AMC execution"],
                [[split_key(f.partition_key)[0], f.instance_id, f.status, f.error_type or "",
                  (f.reason or "").replace("|", "/")[:300], f.attempts, f.amc_execution_id or ""]
                 for f in failed])) if failed else "none",
        },
    )


def execution_checks(workflow: WorkflowConfig, config: PipelineConfig) -> list[dg.AssetChecksDefinition]:
    key = workflow_asset_key(workflow.name)

    @dg.asset_check(asset=key, name=STUCK_CHECK,
                    description=f"No execution PENDING over {workflow.stuck_pending_minutes} min or RUNNING over "
                                f"{workflow.stuck_running_minutes} min.")
    def no_stuck_executions(amc_store: StoreResource) -> dg.AssetCheckResult:
        return stuck_answer(stuck_executions(amc_store.get_store(), workflow)).result()

    @dg.asset_check(asset=key, name=FAILED_CHECK,
                    description="No window whose execution ended FAILED, TIMEOUT or CANCELLED for good.")
    def no_failed_executions(amc_store: StoreResource) -> dg.AssetCheckResult:
        return failed_answer(failed_executions(amc_store.get_store(), workflow,
                                               max_landing_attempts=config.monitor.max_landing_attempts)).result()

    return [no_stuck_executions, no_failed_executions]


def checks_defs(config: PipelineConfig) -> dg.Definitions:
    """The stuck/failed checks of every workflow, the checks job and the sensor that keeps them current."""
    checks = [c for w in config.workflows for c in execution_checks(w, config)]
    check_keys = [k for c in checks for k in c.check_keys] + [HEALTH_CHECK_KEY]
    checks_job = dg.define_asset_job(CHECKS_JOB, selection=dg.AssetSelection.checks(*check_keys),
                                     description="Evaluate the stuck, failed and health checks.")

    @dg.sensor(name="amc_checks_sensor", job=checks_job, default_status=dg.DefaultSensorStatus.RUNNING,
               minimum_interval_seconds=config.monitor.sensor_interval_seconds,
               description="Reports a workflow's stuck/failed check results within the tick when what they "
                           "would say has changed in the store (no run); launches a checks run only for the "
                           "health check, when its problems change.")
    def amc_checks_sensor(context: dg.SensorEvaluationContext, amc_store: StoreResource):
        now = datetime.now(UTC)
        store = amc_store.get_store()
        # One read per workflow: the digest says whether the answer changed, the same findings answer.
        found = {w.name: findings(store, w, config, now=now) for w in config.workflows}
        current = {name: f.digest for name, f in found.items()}
        current["_health"] = health_digest(store, config, now=now)
        # While executions are active, the health check also re-probes AMC every check_interval_seconds.
        if any(store.active_count(i.instance_id) for i in config.instances):
            current["_health"] += f":{int(now.timestamp()) // config.monitor.check_interval_seconds}"
        seen = json.loads(context.cursor) if context.cursor else {}
        changed = sorted(name for name, digest in current.items() if seen.get(name) != digest)
        if not changed:
            return dg.SkipReason("no check would change its answer")
        # The stuck/failed answers come from the store alone: report them now, as runless evaluations,
        # so the UI shows a failure within the tick in which the store knows it.
        events = []
        for name in changed:
            if name in found:
                key = workflow_asset_key(name)
                events.append(stuck_answer(found[name].stuck).evaluation(dg.AssetCheckKey(key, STUCK_CHECK)))
                events.append(failed_answer(found[name].failed).evaluation(dg.AssetCheckKey(key, FAILED_CHECK)))
        runs = []
        if "_health" in changed:
            health_runs = context.instance.get_runs(
                filters=dg.RunsFilter(job_name=CHECKS_JOB, statuses=[
                    dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]), limit=1)
            if health_runs:
                current["_health"] = seen.get("_health", "")  # ask again once that run is done
            else:
                digest = hashlib.sha1(current["_health"].encode()).hexdigest()[:16]
                runs.append(dg.RunRequest(run_key=f"health:{digest}", asset_check_keys=[HEALTH_CHECK_KEY]))
        context.update_cursor(json.dumps(current, sort_keys=True))
        if not events and not runs:
            return dg.SkipReason(f"no configured check to report for: {', '.join(changed)}")
        return dg.SensorResult(run_requests=runs, asset_events=events)

    return dg.Definitions(asset_checks=checks, jobs=[checks_job], sensors=[amc_checks_sensor])
