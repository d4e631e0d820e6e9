"""The example downstream asset: `amc_rollups/campaign_performance_weekly`, kept current by automation.

It shows how a consumer of a workflow's dataset stays fresh as new partitions land, without a
schedule: an `AutomationCondition` evaluated by `amc_automation_sensor`. Present only when the
configuration has the `campaign_performance` workflow it reads.
"""

import dagster as dg

from amc_pipeline.config import PipelineConfig, Settings, StorageConfig
from amc_pipeline.defs.observations import workflow_asset_key
from amc_pipeline.downstream import (
    SOURCE,
    read_dataset,
    read_table,
    rollup_path,
    rollup_uri,
    weekly_rollup,
    write_rollup,
)
from amc_pipeline.results.storage import iceberg_settings, results_root

#: Rerun when any landed partition changes, but not while upstream runs are still in progress.
#: (`eager()` would wait for every upstream partition to exist, which a growing dataset never has.)
ROLLUP_CONDITION = (
    (dg.AutomationCondition.any_deps_updated() | dg.AutomationCondition.missing().newly_true())
    .since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("any landed partition updated")


def rollup_asset(storage: StorageConfig) -> dg.AssetsDefinition:
    """The roll-up, reading and writing on the configured results storage (`storage.results_uri`)."""

    @dg.asset(
        key=["amc_rollups", "campaign_performance_weekly"],
        deps=[workflow_asset_key(SOURCE)],
        group_name="rollups",
        kinds={"parquet"},
        automation_condition=ROLLUP_CONDITION,
        description="Impressions, clicks and spend per campaign and ISO week, over every landed day.",
    )
    def campaign_performance_weekly(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        root = results_root(storage)
        # The Iceberg catalog lives in the store's database, read from the environment like the
        # store resource (the roll-up needs no resource of its own).
        iceberg = iceberg_settings(storage, Settings.from_env().database_url)
        table = read_table(iceberg, SOURCE) if iceberg is not None else read_dataset(SOURCE, root)
        rollup = weekly_rollup(table)
        write_rollup(rollup, rollup_path(root), root)
        context.log.info(f"rolled up {table.num_rows} daily rows into {rollup.num_rows} weekly rows")
        return dg.MaterializeResult(metadata={
            "dagster/row_count": dg.MetadataValue.int(rollup.num_rows),
            "dagster/uri": dg.MetadataValue.path(rollup_uri(root)),
            "source_rows": dg.MetadataValue.int(table.num_rows),
        })

    return campaign_performance_weekly


def downstream_defs(config: PipelineConfig) -> dg.Definitions:
    if not any(w.name == SOURCE for w in config.workflows):
        return dg.Definitions()
    return dg.Definitions(assets=[rollup_asset(config.storage)])
