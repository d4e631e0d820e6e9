"""How a landed window's columns differ from the last landed window of the same workflow.

Why compare with the previous landing and not with a declared schema: AMC decides the output
columns from the SQL, so the only reference is what landed before; a column added, removed or
retyped is what breaks downstream readers.
"""

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from amc_pipeline.results.storage import filesystem_for_uri
from amc_pipeline.store.store import ExecutionStore


@dataclass(frozen=True)
class SchemaDrift:
    compared_with: str | None  # the partition key compared with; None for the first landing
    added: list[str]
    removed: list[str]
    retyped: list[str]

    @property
    def drifted(self) -> bool:
        return bool(self.added or self.removed or self.retyped)


def previous_landed_schema(store: ExecutionStore, workflow: str, partition_key: str) -> tuple[str, pa.Schema] | None:
    """Schema of the most recently landed other partition of the workflow."""
    landed = [e for e in store.list_executions(workflow=workflow, live_only=True, limit=500)
              if e.landed_at is not None and e.partition_key != partition_key and e.uri]
    landed.sort(key=lambda e: e.landed_at, reverse=True)
    for execution in landed:
        # The recorded URI says where that window landed (file://… or s3://…/window_start=<key>/).
        filesystem, folder = filesystem_for_uri(execution.uri)
        try:
            infos = filesystem.get_file_info(pafs.FileSelector(folder.rstrip("/"), allow_not_found=True))
        except FileNotFoundError:
            continue
        parts = sorted(i.path for i in infos if i.type == pafs.FileType.File
                       and i.base_name.startswith("part-") and i.base_name.endswith(".parquet"))
        if parts:
            with filesystem.open_input_file(parts[0]) as f:
                return execution.partition_key, pq.read_schema(f)
    return None


def _canonical(dtype: pa.DataType) -> str:
    """A type as readers see it: Iceberg hands back large strings and microsecond timestamps for the
    same columns our Parquet writes as strings and milliseconds; neither is a change of the data."""
    if pa.types.is_large_string(dtype):
        return "string"
    if pa.types.is_large_binary(dtype):
        return "binary"
    if pa.types.is_timestamp(dtype):
        return f"timestamp[{dtype.tz}]" if dtype.tz else "timestamp"
    return str(dtype)


def diff_schemas(before_schema: pa.Schema, after_schema: pa.Schema, *, compared_with: str) -> SchemaDrift:
    before = {f.name: _canonical(f.type) for f in before_schema}
    after = {f.name: _canonical(f.type) for f in after_schema}
    return SchemaDrift(
        compared_with=compared_with,
        added=sorted(set(after) - set(before)),
        removed=sorted(set(before) - set(after)),
        retyped=sorted(f"{n}: {before[n]} → {after[n]}" for n in set(before) & set(after) if before[n] != after[n]),
    )


def schema_drift(store: ExecutionStore, workflow: str, partition_key: str, schema: pa.Schema) -> SchemaDrift:
    """Against the most recently landed other window of the workflow (plain Parquet)."""
    previous = previous_landed_schema(store, workflow, partition_key)
    if previous is None:
        return SchemaDrift(None, [], [], [])
    prev_key, prev = previous
    return diff_schemas(prev, schema, compared_with=prev_key)


def table_drift(table_name: str, previous: pa.Schema | None, schema: pa.Schema) -> SchemaDrift:
    """Against the Iceberg table's columns just before this window's commit (the union of earlier
    windows; the table itself has evolved to take an added column)."""
    if previous is None:
        return SchemaDrift(None, [], [], [])
    return diff_schemas(previous, schema, compared_with=f"table {table_name} before this commit")
