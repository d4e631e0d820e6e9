"""The monitoring assets `amc/execution_metrics` and `amc/execution_overview`, and the health check.

The original system's promise was that a person sees at a glance what runs, what is stuck and what
failed, and why. Here that glance is the Dagster UI: plots of queue and run times, a history table
per workflow, and `amc_pipeline_healthy` (stale poller, AMC unreachable, error rate).
"""

from datetime import UTC, datetime

import dagster as dg

from amc_pipeline.config import PipelineConfig
from amc_pipeline.defs.checks import HEALTH_CHECK_KEY
from amc_pipeline.defs.resources import AmcResource, StoreResource
from amc_pipeline.health.metrics import compute_metrics
from amc_pipeline.health.status import amc_probe_for, monitor_health
from amc_pipeline.health.views import execution_rows, render_markdown

METRICS_KEY = HEALTH_CHECK_KEY.asset_key
OVERVIEW_KEY = dg.AssetKey(["amc", "execution_overview"])
#: Per-workflow figures also shown as numeric metadata (plotted over materializations).
PLOTTED = ("executions", "queue_p95_seconds", "run_p95_seconds", "error_rate", "rows_landed")


def health_defs(config: PipelineConfig) -> dg.Definitions:
    workflows = [w.name for w in config.workflows]
    refresh = dg.AutomationCondition.on_cron(config.monitor.metrics_cron)

    @dg.asset(key=METRICS_KEY, group_name="amc_monitoring", kinds={"amc"}, automation_condition=refresh,
              description="Counts by status, queue and run time p50/p95, error rate by type, rows and bytes "
                          "landed, per workflow and overall, over the last 7 days.")
    def execution_metrics(amc_store: StoreResource) -> dg.MaterializeResult:
        metrics = compute_metrics(amc_store.get_store(), workflows, datetime.now(UTC))
        columns = list(metrics["overall"].keys())
        table = dg.MetadataValue.table(
            records=[dg.TableRecord({"scope": name, **{c: m.get(c, 0) for c in columns}})
                     for name, m in metrics.items()],
            schema=dg.TableSchema(columns=[dg.TableColumn("scope", "string"),
                                           *[dg.TableColumn(c, "float") for c in columns]]),
        )
        numeric = {f"overall/{k}": v for k, v in metrics["overall"].items()}
        for name in workflows:
            numeric.update({f"{name}/{k}": v for k, v in metrics[name].items() if k in PLOTTED})
        return dg.MaterializeResult(metadata={"metrics": table, **numeric})

    @dg.asset(key=OVERVIEW_KEY, group_name="amc_monitoring", kinds={"amc"}, automation_condition=refresh,
              description="The latest executions per workflow, as the original system's history page.")
    def execution_overview(amc_store: StoreResource) -> dg.MaterializeResult:
        store = amc_store.get_store()
        sections = []
        for name in workflows:
            rows = execution_rows(workflow=name, limit=15, store=store)
            sections.append(f"### {name}\n\n{render_markdown(rows) if rows else 'no executions yet'}")
        return dg.MaterializeResult(metadata={"history": dg.MetadataValue.md("\n\n".join(sections)),
                                              "workflows": len(workflows)})

    @dg.asset_check(asset=METRICS_KEY, name=HEALTH_CHECK_KEY.name,
                    description="The poller is current, AMC answers (token + one list call), error rate is low.")
    def amc_pipeline_healthy(amc_store: StoreResource, amc: AmcResource) -> dg.AssetCheckResult:
        store = amc_store.get_store()
        health = monitor_health(store, config, amc_probe=amc_probe_for(amc.get_client, config, store))
        return dg.AssetCheckResult(
            passed=health.healthy, severity=dg.AssetCheckSeverity.ERROR,
            description="; ".join(health.problems) or "healthy",
            metadata={k: (v if isinstance(v, int | float | str | bool) else str(v)) for k, v in health.facts.items()},
        )

    return dg.Definitions(assets=[execution_metrics, execution_overview], asset_checks=[amc_pipeline_healthy])
