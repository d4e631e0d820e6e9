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


def schema_drift(store: ExecutionStore, workflow: str, partition_key: str, schema: pa.Schema) -> SchemaDrift:
    previous = previous_landed_schema(store, workflow, partition_key)
    if previous is None:
        return SchemaDrift(None, [], [], [])
    prev_key, prev = previous
    before = {f.name: str(f.type) for f in prev}
    after = {f.name: str(f.type) for f in schema}
    return SchemaDrift(
        compared_with=prev_key,
        added=sorted(set(after) - set(before)),
        removed=sorted(set(before) - set(after)),
        retyped=sorted(f"{n}: {before[n]} → {after[n]}" for n in set(before) & set(after) if before[n] != after[n]),
    )
