"""An example consumer of a landed dataset: a weekly roll-up of `campaign_performance`.

It shows how downstream code reads the landed dataset (a pyarrow hive-partitioned dataset on the
results storage: a local folder or an object store, `storage.results_uri`); the asset that keeps it
current as partitions land lives in `defs/downstream.py`.
"""

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyiceberg.exceptions import NoSuchTableError

from amc_pipeline.results.iceberg import IcebergSettings, load_catalog_for
from amc_pipeline.results.storage import ResultsRoot, results_root

SOURCE = "campaign_performance"
ROLLUP_NAME = "campaign_performance_weekly"


def read_dataset(workflow: str, root: ResultsRoot | None = None) -> pa.Table:
    """Every landed partition of a workflow, with `window_start` from the hive folder names.

    `root`: the results root (default: from the environment, `results_root()`). Names starting with
    "." or "_" (staging, markers) are skipped.
    """
    root = root or results_root()
    path = root.workflow_path(workflow)
    if root.filesystem.get_file_info(path).type == pafs.FileType.NotFound:
        return pa.table({})
    dataset = ds.dataset(path, filesystem=root.filesystem, format="parquet", partitioning="hive",
                         ignore_prefixes=[".", "_"])
    return dataset.to_table()


def read_table(settings: IcebergSettings, workflow: str) -> pa.Table:
    """Every landed window of a workflow from its Iceberg table (`<namespace>.<workflow>`), as one
    consistent snapshot; `window_start` is a column of the table. Empty before the first landing."""
    catalog = load_catalog_for(settings)
    try:
        table = catalog.load_table(f"{settings.namespace}.{workflow}")
    except NoSuchTableError:
        return pa.table({})
    return table.scan().to_arrow()


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


def rollup_path(root: ResultsRoot | None = None) -> str:
    """Where the roll-up is written, on the same storage as the results (a path in `root.filesystem`).

    Local: `rollups/` beside the results folder (the default `<data dir>/rollups/…`). Object store:
    `<root>/_rollups/…`, inside the root but under a name no workflow can take.
    """
    root = root or results_root()
    if root.is_local:
        return str(root.local_dir.parent / "rollups" / f"{ROLLUP_NAME}.parquet")
    return root.join(f"_rollups/{ROLLUP_NAME}.parquet")


def rollup_uri(root: ResultsRoot | None = None) -> str:
    """`rollup_path` as a URI (file://… or s3://…), for `dagster/uri`."""
    root = root or results_root()
    path = rollup_path(root)
    if root.is_local:
        return Path(path).as_uri()
    return root.uri_of(path.removeprefix(root.path).lstrip("/"))


def write_rollup(rollup: pa.Table, target: str, root: ResultsRoot | None = None) -> None:
    """Write the roll-up so a reader never sees a half-written file.

    Local: beside the target and renamed over it. Object store: one streamed upload; the object
    appears only when the upload completes.
    """
    root = root or results_root()
    fs = root.filesystem
    if root.is_local:
        fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        tmp = target + ".tmp"
        pq.write_table(rollup, tmp, filesystem=fs)
        fs.move(tmp, target)
    else:
        pq.write_table(rollup, target, filesystem=fs)
