"""Splitting a packed result into its windows by the split column (docs/packing.md).

Why pyarrow.compute filters over Parquet part files: the pack's result is converted once, typed from
AMC's outputColumns, by the ordinary landing code; each window's rows are then a filter on one
column, read a row group at a time so memory follows the row group, not the pack.

Bounds are the windows' local wall times in the workflow's time zone: a DATE value is the calendar
date AMC reports in the execution's `timeWindowTimeZone`, and a TIMESTAMP without zone is a wall time
in that zone too (the pack is sent with the workflow's zone, like a single window).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from amc_pipeline.partitions import Window
from amc_pipeline.results.convert_parquet import dictionary_columns, json_safe, write_empty
from amc_pipeline.results.convert_schema import normalize_output_columns

#: AMC dataTypes a pack can be split by.
SPLIT_TYPES = ("DATE", "TIMESTAMP")


class PackSplitError(ValueError):
    """The packed result cannot be split into its windows; the message names the column or value."""


def check_split_column(output_columns: Any, column: str, amc_execution_id: str) -> str:
    """The split column's AMC dataType; raises PackSplitError naming the column when it cannot split."""
    specs = {c.name: c.data_type for c in normalize_output_columns(output_columns)}
    if column not in specs:
        raise PackSplitError(
            f"packing.split_column {column!r}: not among the outputColumns of AMC execution {amc_execution_id} "
            f"({', '.join(specs) or 'none'}); the query must output the column it groups the pack by")
    if specs[column] not in SPLIT_TYPES:
        raise PackSplitError(
            f"packing.split_column {column!r}: AMC reports it as {specs[column]}, expected DATE or TIMESTAMP")
    return specs[column]


@dataclass(frozen=True)
class Bounds:
    """One window's [lo, hi) as a scalar of the split column's Arrow type."""

    partition_key: str
    lo: pa.Scalar
    hi: pa.Scalar


def window_bounds(windows: Sequence[Window], arrow_type: pa.DataType) -> list[Bounds]:
    """Each window's bounds in the column's type: local dates for DATE, local wall times for TIMESTAMP."""
    out = []
    for w in windows:
        if pa.types.is_date(arrow_type):
            lo: date | datetime = w.start_local.date()
            hi: date | datetime = w.end_local.date()
        elif getattr(arrow_type, "tz", None):
            lo, hi = w.start_utc, w.end_utc
        else:
            lo, hi = w.start_local.replace(tzinfo=None), w.end_local.replace(tzinfo=None)
        out.append(Bounds(w.partition_key, pa.scalar(lo, arrow_type), pa.scalar(hi, arrow_type)))
    return out


def _mask(values: pa.Array | pa.ChunkedArray, bounds: Bounds) -> pa.Array:
    return pc.and_kleene(pc.greater_equal(values, bounds.lo), pc.less(values, bounds.hi))


def _batches(parts: Sequence[Path], columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    for part in parts:
        yield from pq.ParquetFile(str(part)).iter_batches(columns=columns)


def check_in_range(parts: Sequence[Path], column: str, bounds: Sequence[Bounds], pack_label: str) -> int:
    """Every row's split value lies in the pack's range; returns the row count. Read before any write.

    Raises PackSplitError naming the first value outside [first start, last end), or a null.
    """
    lo, hi = bounds[0].lo, bounds[-1].hi
    rows = 0
    for batch in _batches(parts, [column]):
        values = batch.column(0)
        rows += len(values)
        inside = pc.fill_null(pc.and_kleene(pc.greater_equal(values, lo), pc.less(values, hi)), False)
        if not pc.all(inside).as_py():
            outside = pc.filter(values, pc.invert(inside))
            value = outside[0].as_py()
            raise PackSplitError(
                f"packing.split_column {column!r}: value {value if value is not None else 'null'!s} lies outside "
                f"the packed range {lo.as_py()} – {hi.as_py()} of {pack_label}; nothing was landed")
    return rows


@dataclass(frozen=True)
class WindowPart:
    """What `write_window` wrote for one window."""

    rows: int
    preview: list[dict[str, Any]]


def write_window(
    parts: Sequence[Path], column: str, bounds: Bounds, schema: pa.Schema, dest: Path, *,
    compression: str, preview_rows: int,
) -> WindowPart:
    """Write the window's rows of the pack into one Parquet file at `dest` (the schema when none)."""
    writer: pq.ParquetWriter | None = None
    rows = 0
    preview: list[dict[str, Any]] = []
    index = schema.get_field_index(column)
    try:
        for batch in _batches(parts):
            keep = pc.fill_null(_mask(batch.column(index), bounds), False)
            selected = batch.filter(keep)
            if selected.num_rows == 0:
                continue
            if writer is None:
                writer = pq.ParquetWriter(str(dest), schema, compression=compression,
                                          use_dictionary=dictionary_columns(schema))
            writer.write_batch(selected)
            rows += selected.num_rows
            if len(preview) < preview_rows:
                preview.extend({k: json_safe(v) for k, v in r.items()}
                               for r in selected.slice(0, preview_rows - len(preview)).to_pylist())
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        write_empty(dest, schema, compression)
    return WindowPart(rows, preview)
