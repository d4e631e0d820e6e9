"""The example downstream asset: `amc_rollups/campaign_performance_weekly`, kept current by automation.

It shows how a consumer of a workflow's dataset stays fresh as new partitions land, without a
schedule: an `AutomationCondition` evaluated by `amc_automation_sensor`. Present only when the
configuration has the `campaign_performance` workflow it reads.
"""

import dagster as dg

from amc_pipeline.config import PipelineConfig
from amc_pipeline.defs.observations import workflow_asset_key
from amc_pipeline.downstream import SOURCE, read_dataset, rollup_path, weekly_rollup, write_rollup

#: Rerun when any landed partition changes, but not while upstream runs are still in progress.
#: (`eager()` would wait for every upstream partition to exist, which a growing dataset never has.)
ROLLUP_CONDITION = (
    (dg.AutomationCondition.any_deps_updated() | dg.AutomationCondition.missing().newly_true())
    .since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("any landed partition updated")


@dg.asset(
    key=["amc_rollups", "campaign_performance_weekly"],
    deps=[workflow_asset_key(SOURCE)],
    group_name="rollups",
    kinds={"parquet"},
    automation_condition=ROLLUP_CONDITION,
    description="Impressions, clicks and spend per campaign and ISO week, over every landed day.",
)
def campaign_performance_weekly(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    table = read_dataset(SOURCE)
    rollup = weekly_rollup(table)
    target = rollup_path()
    write_rollup(rollup, target)
    context.log.info(f"rolled up {table.num_rows} daily rows into {rollup.num_rows} weekly rows")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": dg.MetadataValue.int(rollup.num_rows),
        "dagster/uri": dg.MetadataValue.path(target.as_uri()),
        "source_rows": dg.MetadataValue.int(table.num_rows),
    })


def downstream_defs(config: PipelineConfig) -> dg.Definitions:
    if not any(w.name == SOURCE for w in config.workflows):
        return dg.Definitions()
    return dg.Definitions(assets=[campaign_performance_weekly])
