"""Execution checks on every workflow asset, the metrics and overview assets, and the health check.

The original system's promise was that a person sees at a glance what runs, what is stuck and what
failed, and why. Here that glance is the Dagster UI: a yellow `no_stuck_executions`, a red
`no_failed_executions` with AMC's reason, plots of queue and run times, and a history table.
"""

import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from amc_pipeline.amc.resource import AmcResource
from amc_pipeline.config import PipelineConfig, WorkflowConfig
from amc_pipeline.health.status import amc_probe_for, failed_executions, monitor_health, stuck_executions
from amc_pipeline.health.views import execution_rows, render_markdown
from amc_pipeline.resources import StoreResource
from amc_pipeline.results.assets import asset_key

METRICS_KEY = dg.AssetKey(["amc", "execution_metrics"])
OVERVIEW_KEY = dg.AssetKey(["amc", "execution_overview"])
CHECKS_JOB = "amc_execution_checks"
METRICS_WINDOW = timedelta(days=7)


def build_execution_checks(workflow: WorkflowConfig, config: PipelineConfig) -> list[dg.AssetChecksDefinition]:
    key = asset_key(workflow)

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
                "stuck": dg.MetadataValue.md(
                    "| partition | status | AMC execution | age (min) | limit (min) |\n|---|---|---|---|---|\n"
                    + "\n".join(f"| {s.partition_key} | {s.status} | {s.amc_execution_id or ''} | {s.age_minutes} "
                                f"| {s.limit_minutes} |" for s in stuck)) if stuck else "none",
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
                "failed": dg.MetadataValue.md(
                    "| partition | status | error type | reason | attempts | AMC execution |\n"
                    "|---|---|---|---|---|---|\n"
                    + "\n".join(f"| {f.partition_key} | {f.status} | {f.error_type or ''} | "
                                f"{(f.reason or '').replace('|', '/')[:300]} | {f.attempts} | "
                                f"{f.amc_execution_id or ''} |" for f in failed)) if failed else "none",
            },
        )

    return [no_stuck_executions, no_failed_executions]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return float(values[0])
    return float(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1])


def compute_metrics(store, workflows: list[str], now: datetime) -> dict[str, dict[str, Any]]:
    """Per workflow and overall: counts by status, queue/run p50/p95, error rate by type, rows, bytes."""
    pairs = store.attempts_since(now - METRICS_WINDOW)
    groups: dict[str, list] = defaultdict(list)
    for execution, attempt in pairs:
        groups[execution.workflow].append((execution, attempt))
        groups["overall"].append((execution, attempt))
    result = {}
    for name in ["overall", *workflows]:
        items = groups.get(name, [])
        current = [(e, a) for e, a in items if e.current_attempt_id == a.id and e.live]
        statuses = Counter(a.status for _, a in current)
        queue = [(a.submitted_at - e.requested_at).total_seconds() for e, a in items
                 if a.submitted_at and a.attempt == 1]
        run = [a.execution_time_seconds or (a.completed_at - a.submitted_at).total_seconds()
               for _, a in items if a.status == "SUCCESS" and a.submitted_at and a.completed_at]
        errors = Counter(a.error_type for _, a in items if a.status in ("FAILED", "TIMEOUT") and a.error_type)
        finished = sum(1 for _, a in items if a.status in ("SUCCESS", "FAILED", "TIMEOUT", "CANCELLED"))
        landed = {e.id: e for e, _ in current if e.landed_at}
        result[name] = {
            "executions": len(current),
            **{f"status_{s.lower()}": statuses.get(s, 0) for s in
               ("QUEUED", "PENDING", "RUNNING", "SUCCESS", "FAILED", "CANCELLED", "TIMEOUT")},
            "queue_p50_seconds": round(_percentile(queue, 50), 1),
            "queue_p95_seconds": round(_percentile(queue, 95), 1),
            "run_p50_seconds": round(_percentile(run, 50), 1),
            "run_p95_seconds": round(_percentile(run, 95), 1),
            "error_rate": round(sum(errors.values()) / finished, 3) if finished else 0.0,
            **{f"errors_{t.lower()}": n for t, n in errors.items()},
            "rows_landed": sum(e.rows or 0 for e in landed.values()),
            "bytes_landed": sum(e.bytes or 0 for e in landed.values()),
        }
    return result


def build_health_defs(config: PipelineConfig) -> tuple[list, list, dg.SensorDefinition, Any]:
    """(assets, checks, sensor) for monitoring: metrics, overview, execution checks, health."""
    workflows = [w.name for w in config.workflows]

    @dg.asset(key=METRICS_KEY, group_name="amc_monitoring", kinds={"amc"},
              automation_condition=dg.AutomationCondition.on_cron(config.monitor.metrics_cron),
              description="Counts by status, queue and run time p50/p95, error rate by type, rows and bytes "
                          "landed, per workflow and overall, over the last 7 days.")
    def execution_metrics(context: dg.AssetExecutionContext, amc_store: StoreResource) -> dg.MaterializeResult:
        metrics = compute_metrics(amc_store.get_store(), workflows, datetime.now(UTC))
        columns = list(next(iter(metrics.values())).keys())
        table = dg.MetadataValue.table(
            records=[dg.TableRecord({"scope": name, **{c: m.get(c, 0) for c in columns}})
                     for name, m in metrics.items()],
            schema=dg.TableSchema(columns=[dg.TableColumn("scope", "string"),
                                           *[dg.TableColumn(c, "float") for c in columns]]),
        )
        numeric = {f"overall/{k}": v for k, v in metrics["overall"].items()}
        for name in workflows:
            numeric.update({f"{name}/{k}": v for k, v in metrics[name].items()
                            if k in ("executions", "queue_p95_seconds", "run_p95_seconds", "error_rate",
                                     "rows_landed")})
        return dg.MaterializeResult(metadata={"metrics": table, **numeric})

    @dg.asset(key=OVERVIEW_KEY, group_name="amc_monitoring", kinds={"amc"},
              automation_condition=dg.AutomationCondition.on_cron(config.monitor.metrics_cron),
              description="The latest executions per workflow, as the original system's history page.")
    def execution_overview(amc_store: StoreResource) -> dg.MaterializeResult:
        store = amc_store.get_store()
        sections = []
        for name in workflows:
            rows = execution_rows(workflow=name, limit=15, store=store)
            sections.append(f"### {name}\n\n{render_markdown(rows) if rows else 'no executions yet'}")
        return dg.MaterializeResult(metadata={"history": dg.MetadataValue.md("\n\n".join(sections)),
                                              "workflows": len(workflows)})

    @dg.asset_check(asset=METRICS_KEY, name="amc_pipeline_healthy",
                    description="The poller is current, AMC answers (token + one list call), error rate is low.")
    def amc_pipeline_healthy(amc_store: StoreResource, amc: AmcResource) -> dg.AssetCheckResult:
        health = monitor_health(amc_store.get_store(), config, amc_probe=amc_probe_for(amc, config))
        return dg.AssetCheckResult(
            passed=health.healthy, severity=dg.AssetCheckSeverity.ERROR,
            description="; ".join(health.problems) or "healthy",
            metadata={k: (v if isinstance(v, int | float | str | bool) else str(v)) for k, v in health.facts.items()},
        )

    checks = [c for w in config.workflows for c in build_execution_checks(w, config)] + [amc_pipeline_healthy]
    check_keys = [k for c in checks for k in c.check_keys]
    checks_job = dg.define_asset_job(CHECKS_JOB, selection=dg.AssetSelection.checks(*check_keys),
                                     description="Evaluate the stuck, failed and health checks.")

    @dg.sensor(name="amc_checks_sensor", job=checks_job, default_status=dg.DefaultSensorStatus.RUNNING,
               minimum_interval_seconds=config.monitor.check_interval_seconds,
               description="Keeps the stuck, failed and health checks current (no stale green in the UI).")
    def amc_checks_sensor(context: dg.SensorEvaluationContext):
        in_flight = context.instance.get_runs(
            filters=dg.RunsFilter(job_name=CHECKS_JOB, statuses=[
                dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]), limit=1)
        if in_flight:
            return dg.SkipReason(f"checks run {in_flight[0].run_id} still in flight")
        bucket = int(datetime.now(UTC).timestamp()) // config.monitor.check_interval_seconds
        return dg.RunRequest(run_key=f"checks:{bucket}")

    return [execution_metrics, execution_overview], checks, amc_checks_sensor, checks_job
