"""An example consumer of a landed dataset: a weekly roll-up of `campaign_performance`.

It shows how downstream code reads the landed dataset (a pyarrow hive-partitioned dataset); the
asset that keeps it current as partitions land lives in `defs/downstream.py`.
"""

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from amc_pipeline.config import Settings
from amc_pipeline.results.layout import workflow_dir

SOURCE = "campaign_performance"


def read_dataset(workflow: str) -> pa.Table:
    """Every landed partition of a workflow, with `window_start` from the hive folder names."""
    root = workflow_dir(Settings.from_env().data_dir, workflow)
    if not root.exists():
        return pa.table({})
    dataset = ds.dataset(root, format="parquet", partitioning="hive", ignore_prefixes=[".", "_"])
    return dataset.to_table()


def weekly_rollup(table: pa.Table) -> pa.Table:
    """Impressions, clicks and spend per campaign and ISO week (Monday), with the days each covers."""
    if table.num_rows == 0:
        return pa.table({"week_start": pa.array([], pa.date32()), "campaign": pa.array([], pa.string()),
                         "impressions": pa.array([], pa.int64()), "clicks": pa.array([], pa.int64()),
                         "spend": pa.array([], pa.float64()), "days": pa.array([], pa.int64())})
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
    return rollup.select(["week_start", "campaign", "impressions", "clicks", "spend", "days"]).sort_by(
        [("week_start", "ascending"), ("campaign", "ascending")])


def write_rollup(rollup: pa.Table, target: Path) -> None:
    """Write beside the target and rename over it, so a reader never sees a half-written file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".parquet.tmp")
    pq.write_table(rollup, tmp)
    tmp.replace(target)


def rollup_path() -> Path:
    return Settings.from_env().data_dir / "rollups" / "campaign_performance_weekly.parquet"
