"""An example consumer: a weekly roll-up of amc/campaign_performance, kept current by automation.

It shows how downstream code reads the landed dataset (a pyarrow hive-partitioned dataset) and how
`AutomationCondition` keeps it fresh as new partitions land, without a schedule.
"""

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from amc_pipeline.config import Settings
from amc_pipeline.results.layout import workflow_dir

SOURCE = "campaign_performance"

#: Rerun when any landed partition changes, but not while upstream runs are still in progress.
#: (`eager()` would wait for every upstream partition to exist, which a growing dataset never has.)
ROLLUP_CONDITION = (
    (dg.AutomationCondition.any_deps_updated() | dg.AutomationCondition.missing().newly_true())
    .since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("any landed partition updated")


def read_dataset(workflow: str) -> pa.Table:
    """Every landed partition of a workflow, with `window_start` from the hive folder names."""
    root = workflow_dir(Settings.from_env().data_dir, workflow)
    if not root.exists():
        return pa.table({})
    dataset = ds.dataset(root, format="parquet", partitioning="hive", ignore_prefixes=[".", "_"])
    return dataset.to_table()


@dg.asset(
    key=["amc_rollups", "campaign_performance_weekly"],
    deps=[dg.AssetKey(["amc", SOURCE])],
    group_name="rollups",
    kinds={"parquet"},
    automation_condition=ROLLUP_CONDITION,
    description="Impressions, clicks and spend per campaign and ISO week, over every landed day.",
)
def campaign_performance_weekly(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    table = read_dataset(SOURCE)
    out_dir = Settings.from_env().data_dir / "rollups"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "campaign_performance_weekly.parquet"
    if table.num_rows == 0:
        rollup = pa.table({"week_start": pa.array([], pa.date32()), "campaign": pa.array([], pa.string()),
                           "impressions": pa.array([], pa.int64()), "clicks": pa.array([], pa.int64()),
                           "spend": pa.array([], pa.float64()), "days": pa.array([], pa.int64())})
    else:
        day = pc.strptime(pc.cast(table["window_start"], pa.string()), format="%Y-%m-%d", unit="s")
        week_start = pc.cast(pc.floor_temporal(day, unit="week", week_starts_monday=True), pa.date32())
        metric = {name: table[name] if name in table.column_names else pa.nulls(table.num_rows, pa.int64())
                  for name in ("impressions", "clicks")}
        spend = table["spend"] if "spend" in table.column_names else pa.nulls(table.num_rows, pa.float64())
        grouped = pa.table({
            "week_start": week_start, "campaign": table["campaign"], "impressions": metric["impressions"],
            "clicks": metric["clicks"], "spend": spend, "day": table["window_start"],
        }).group_by(["week_start", "campaign"]).aggregate([
            ("impressions", "sum"), ("clicks", "sum"), ("spend", "sum"), ("day", "count_distinct"),
        ])
        names = {"impressions_sum": "impressions", "clicks_sum": "clicks", "spend_sum": "spend",
                 "day_count_distinct": "days"}
        rollup = grouped.rename_columns([names.get(n, n) for n in grouped.column_names])
        rollup = rollup.select(["week_start", "campaign", "impressions", "clicks", "spend", "days"]).sort_by(
            [("week_start", "ascending"), ("campaign", "ascending")])
    tmp = target.with_suffix(".parquet.tmp")
    pq.write_table(rollup, tmp)
    tmp.replace(target)
    context.log.info(f"rolled up {table.num_rows} daily rows into {rollup.num_rows} weekly rows")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": dg.MetadataValue.int(rollup.num_rows),
        "dagster/uri": dg.MetadataValue.path(target.as_uri()),
        "source_rows": dg.MetadataValue.int(table.num_rows),
    })
