"""The metadata of a landed window, in Dagster's standard `dagster/` keys plus `amc/` facts.

Why standard keys: the UI plots `dagster/row_count` over partitions, shows `dagster/column_schema`
as the asset's columns and links `dagster/uri`; downstream tooling reads the same keys.
"""

from typing import Any

import dagster as dg
import pyarrow as pa

from amc_pipeline.monitor.windows import Landed
from amc_pipeline.store.records import ExecutionView


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name=f.name, type=str(f.type)) for f in schema])


def _preview_type(dtype: pa.DataType) -> str:
    if pa.types.is_integer(dtype):
        return "int"
    if pa.types.is_floating(dtype):
        return "float"
    if pa.types.is_boolean(dtype):
        return "bool"
    return "string"


def preview_table(schema: pa.Schema, rows: list[dict[str, Any]]) -> dg.TableMetadataValue:
    """The landing's first rows (already capped by the converter) as a table the UI renders."""
    records = [
        dg.TableRecord({k: (v if isinstance(v, str | int | float | bool) or v is None else str(v))
                        for k, v in row.items()})
        for row in rows
    ]
    cols = [dg.TableColumn(name=f.name, type=_preview_type(f.type)) for f in schema]
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=cols))


def materialization(execution: ExecutionView, landed: Landed) -> dict[str, Any]:
    attempt = execution.attempt
    assert attempt is not None
    landing = landed.landing
    queue_seconds = (
        (attempt.submitted_at - execution.requested_at).total_seconds()
        if attempt.submitted_at and execution.requested_at else 0.0
    )
    meta: dict[str, Any] = {
        "dagster/row_count": dg.MetadataValue.int(landing.rows),
        "dagster/partition_row_count": dg.MetadataValue.int(landing.rows),
        "dagster/size_bytes": dg.MetadataValue.int(landing.bytes),
        "dagster/uri": dg.MetadataValue.path(landing.uri),
        "dagster/column_schema": column_schema(landing.schema),
        "amc/execution_id": dg.MetadataValue.text(attempt.amc_execution_id or ""),
        "amc/attempt": dg.MetadataValue.int(attempt.attempt),
        # Who started the execution: pipeline, or an adopted AMC schedule run / external execution.
        "amc/origin": dg.MetadataValue.text(attempt.origin or "pipeline"),
        "amc/queue_seconds": dg.MetadataValue.float(float(queue_seconds)),
        "amc/run_seconds": dg.MetadataValue.float(float(attempt.execution_time_seconds or 0.0)),
        "amc/download_seconds": dg.MetadataValue.float(round(landing.download_seconds, 3)),
        "amc/files": dg.MetadataValue.int(landing.files),
        "amc/request_id": dg.MetadataValue.text(landed.request_id or attempt.amc_request_id or ""),
        "preview": preview_table(landing.schema, landing.preview),
    }
    if landing.table_name:
        meta["dagster/table_name"] = dg.MetadataValue.text(landing.table_name)
        meta["amc/snapshot_id"] = dg.MetadataValue.text(str(landing.snapshot_id))
    if landing.mixed_window is not None:
        # Object stores: how long a listing showed both the previous and the new attempt's parts.
        meta["amc/mixed_window_seconds"] = dg.MetadataValue.float(landing.mixed_window_seconds)
    return meta
