"""Writing converted result batches as Parquet: row groups, dictionary columns, memory, previews.

Why a module of its own: the CSV and JSON readers (convert_csv, convert_json) produce Arrow record
batches in the same way but from different parsers; everything about how those batches become a
Parquet file, and what is reported about it (`ConversionResult`), is shared and lives here, as does
the empty part a landing writes when AMC returns no file at all.

Why re-batching: small read blocks keep the reader's memory low, but one write per block would make
tiny row groups; `RowGroupWriter` buffers batches into row groups of a fixed size, so memory stays
bounded by the row group size, not the file size.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

#: Chosen from benchmarks/landing.py figures (2 cores, ~100 B rows): 128 Ki-row row groups are large
#: enough for good Parquet scans and compression while a buffered group stays around 20 MB (256 Ki and
#: 1 Mi were no faster and used more memory with two files converting at once).
DEFAULT_ROW_GROUP_ROWS = 128 * 1024
DEFAULT_COMPRESSION = "snappy"
PREVIEW_ROWS = 20


@dataclass
class ConversionResult:
    """What one result file became."""

    source: Path
    path: Path
    rows: int
    bytes: int
    schema: pa.Schema
    row_groups: int
    preview: list[dict[str, Any]] = field(default_factory=list)


def json_safe(value: Any) -> Any:
    """A value as plain JSON (for Dagster metadata previews): dates as ISO text, NaN/inf as None."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return str(value)


def _preview_rows(batch: pa.RecordBatch | pa.Table, limit: int) -> list[dict[str, Any]]:
    if limit <= 0 or batch.num_rows == 0:
        return []
    return [{k: json_safe(v) for k, v in row.items()} for row in batch.slice(0, limit).to_pylist()]


_POOL: pa.MemoryPool | None = None


def memory_pool() -> pa.MemoryPool:
    """jemalloc when this pyarrow has it: it returned memory sooner than the default (mimalloc) in
    benchmarks/landing.py (peak RSS ~225 vs ~275 MB converting 1 GB on two threads)."""
    global _POOL
    if _POOL is None:
        try:
            _POOL = pa.jemalloc_memory_pool()
        except (NotImplementedError, pa.ArrowNotImplementedError):
            _POOL = pa.default_memory_pool()
    return _POOL


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth dictionary encoding: strings and dates (AMC dimensions repeat a lot).

    Why not all: ids, metrics and timestamps are high-cardinality; pyarrow builds a dictionary for
    them, gives up after 1 MB and falls back, which cost ~25% of conversion time and made the files
    larger in benchmarks/landing.py.
    """
    return [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_date(f.type)]


def write_empty(dest: Path, schema: pa.Schema, compression: str) -> None:
    """A Parquet file with no rows that still carries `schema`, so readers and the schema-drift check
    see the columns (a zero-byte CSV; a result for which AMC returned no file at all)."""
    pq.write_table(schema.empty_table(), str(dest), compression=compression,
                   use_dictionary=dictionary_columns(schema))


class RowGroupWriter:
    """Buffers small record batches and writes them as row groups of about `row_group_rows` rows.

    Why: small CSV blocks keep the reader's memory low, but one write per block would make tiny row
    groups (slow scans, poor compression, bloated footers).
    """

    def __init__(self, dest: Path, schema: pa.Schema, *, row_group_rows: int, compression: str,
                 preview_rows: int) -> None:
        self.dest = dest
        self.schema = schema
        self.row_group_rows = max(1, row_group_rows)
        self.writer = pq.ParquetWriter(str(dest), schema, compression=compression,
                                       use_dictionary=dictionary_columns(schema), memory_pool=memory_pool())
        self.buffer: list[pa.RecordBatch] = []
        self.buffered = 0
        self.rows = 0
        self.row_groups = 0
        self.preview: list[dict[str, Any]] = []
        self.preview_rows = preview_rows

    def add(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        if len(self.preview) < self.preview_rows:
            self.preview.extend(_preview_rows(batch, self.preview_rows - len(self.preview)))
        self.buffer.append(batch)
        self.buffered += batch.num_rows
        if self.buffered >= self.row_group_rows:
            self._flush(final=False)

    def _flush(self, *, final: bool) -> None:
        if not self.buffer:
            return
        table = pa.Table.from_batches(self.buffer, schema=self.schema)
        # Write whole row groups now; keep the remainder buffered unless this is the end.
        keep = table.num_rows if final else (table.num_rows // self.row_group_rows) * self.row_group_rows
        if keep:
            self.writer.write_table(table.slice(0, keep), row_group_size=self.row_group_rows)
            self.row_groups += math.ceil(keep / self.row_group_rows)
            self.rows += keep
        rest = table.slice(keep)
        self.buffer = rest.to_batches() if rest.num_rows else []
        self.buffered = rest.num_rows

    def close(self) -> None:
        self._flush(final=True)
        self.writer.close()

    def abort(self) -> None:
        with contextlib.suppress(Exception):  # the original error matters, not the close
            self.writer.close()

    def result(self, source: Path) -> ConversionResult:
        """What the closed file holds, as converted from `source`."""
        return ConversionResult(source=source, path=self.dest, rows=self.rows, bytes=self.dest.stat().st_size,
                                schema=self.schema, row_groups=self.row_groups, preview=self.preview)
