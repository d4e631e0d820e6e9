"""AMC result files (CSV, or JSON) → typed Parquet, streamed batch by batch.

Why streaming: a result can be gigabytes; reading it whole (the original system built a list of dicts)
costs memory proportional to the file. pyarrow's streaming CSV reader parses small blocks and we write
them with a ParquetWriter, re-batched into sensible row groups, so memory stays bounded by the row
group size, not the file size.

Why types come from `outputColumns`: AMC declares each column's type; inferring from the data would
turn a LONG column with nulls into floats, or a numeric-looking STRING into numbers, and two files
of the same result could disagree. Empty fields are nulls (AMC: "empty means null"), in string
columns too.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

#: AMC `dataType` → Arrow type. Anything else lands as string (never guessed).
AMC_TYPE_MAP: dict[str, pa.DataType] = {
    "LONG": pa.int64(),
    "DOUBLE": pa.float64(),
    "STRING": pa.string(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("ms"),
    "BOOLEAN": pa.bool_(),
}

#: Defaults chosen from benchmarks/landing.py figures (2 cores, ~100 B rows): 1 MiB blocks keep the
#: reader's working set small; 128 Ki-row row groups are large enough for good Parquet scans and
#: compression while a buffered group stays around 20 MB (256 Ki and 1 Mi were no faster and used
#: more memory with two files converting at once).
DEFAULT_BLOCK_SIZE = 1 << 20
DEFAULT_ROW_GROUP_ROWS = 128 * 1024
DEFAULT_COMPRESSION = "snappy"
PREVIEW_ROWS = 20

#: AMC TIMESTAMP is `yyyy-MM-ddTHH:mm:ss.SSS`; also accept it without millis (and with a space).
TIMESTAMP_PARSERS = [
    pacsv.ISO8601,
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
]

TRUE_VALUES = ["true", "True", "TRUE", "1"]
FALSE_VALUES = ["false", "False", "FALSE", "0"]


class ResultConversionError(ValueError):
    """A result file that cannot become Parquet (malformed CSV/JSON, a value not of its declared type).

    Names the file index (its position in `downloadUrls`) and, where it can be found, the line.
    """

    def __init__(self, message: str, *, file_index: int | None = None, line: int | None = None) -> None:
        where = []
        if file_index is not None:
            where.append(f"result file {file_index}")
        if line is not None:
            where.append(f"line {line}")
        prefix = f"{', '.join(where)}: " if where else ""
        super().__init__(prefix + message)
        self.file_index = file_index
        self.line = line

    def __reduce__(self):
        return (_rebuild_conversion_error, (self.args[0], self.file_index, self.line))


def _rebuild_conversion_error(
    message: str, file_index: int | None, line: int | None
) -> ResultConversionError:
    err = ResultConversionError.__new__(ResultConversionError)
    ValueError.__init__(err, message)
    err.file_index = file_index
    err.line = line
    return err


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    data_type: str


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


def normalize_output_columns(output_columns: Any) -> list[ColumnSpec]:
    """Accept AmcExecution.output_columns (OutputColumn), AMC's raw dicts or (name, type) pairs."""
    specs: list[ColumnSpec] = []
    for col in output_columns or ():
        if isinstance(col, ColumnSpec):
            specs.append(col)
        elif isinstance(col, Mapping):
            name = col.get("name")
            data_type = col.get("dataType", col.get("data_type"))
            if isinstance(name, str):
                specs.append(ColumnSpec(name, str(data_type or "STRING").upper()))
        elif isinstance(col, tuple | list) and len(col) == 2:
            specs.append(ColumnSpec(str(col[0]), str(col[1] or "STRING").upper()))
        elif hasattr(col, "name"):
            data_type = getattr(col, "data_type", None) or getattr(col, "dataType", None) or "STRING"
            specs.append(ColumnSpec(str(col.name), str(data_type).upper()))
    return specs


def arrow_type_for(data_type: str | None) -> pa.DataType:
    """The Arrow type for an AMC dataType; unknown types are strings (lossless, never guessed)."""
    return AMC_TYPE_MAP.get(str(data_type or "").upper(), pa.string())


def schema_for(output_columns: Any) -> pa.Schema:
    """The Parquet schema AMC's outputColumns declare (used when a result has no file at all)."""
    specs = normalize_output_columns(output_columns)
    return pa.schema([pa.field(c.name, arrow_type_for(c.data_type)) for c in specs])


def _types_for_header(header: Sequence[str], specs: Sequence[ColumnSpec]) -> dict[str, pa.DataType]:
    declared = {c.name: arrow_type_for(c.data_type) for c in specs}
    # Columns AMC did not declare (or all, without outputColumns) are strings: never inferred.
    return {name: declared.get(name, pa.string()) for name in header}


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


class _RowGroupWriter:
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


def _read_csv_header(src: Path, file_index: int | None) -> list[str] | None:
    """Column names from the header row (csv module: handles quoting), or None for an empty file."""
    def lines(fh) -> Iterator[str]:
        # Decode line by line so bad bytes further down are not blamed on the header.
        for number, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ResultConversionError(f"invalid UTF-8 in the CSV header ({exc.reason})",
                                            file_index=file_index, line=number) from exc
            yield text.removeprefix("\ufeff") if number == 1 else text

    try:
        with open(src, "rb") as fh:
            header = next(csv.reader(lines(fh)), None)
    except csv.Error as exc:
        raise ResultConversionError(f"malformed CSV header: {exc}", file_index=file_index, line=1) from exc
    if header is None:
        return None
    if len(set(header)) != len(header):
        dupes = sorted({h for h in header if header.count(h) > 1})
        raise ResultConversionError(f"duplicate column names in the CSV header: {dupes}",
                                    file_index=file_index, line=1)
    return header


_CONVERSION_RE = re.compile(r"In CSV column #(\d+): .*invalid value '(.*)'", re.DOTALL)


def _locate_csv_error(src: Path, message: str, width: int) -> tuple[int | None, str]:
    """Find the physical line of an error pyarrow reported without one (slow path, errors only)."""
    if "invalid UTF8" in message or "invalid UTF-8" in message:
        with open(src, "rb") as fh:
            for number, raw in enumerate(fh, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    return number, "invalid UTF-8 data"
        return None, "invalid UTF-8 data"
    match = _CONVERSION_RE.search(message)
    with open(src, encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader = csv.reader(fh)
        start = 1
        try:
            for index, row in enumerate(reader):
                if index > 0:
                    if "Expected" in message and len(row) != width:
                        return start, message
                    if match:
                        col, value = int(match.group(1)), match.group(2)
                        if col < len(row) and row[col] == value:
                            return start, message
                start = reader.line_num + 1
        except csv.Error as exc:
            return start, f"{message} ({exc})"
    return None, message


#: The largest read block tried for a file with very long fields (each retry multiplies by 16).
MAX_BLOCK_SIZE = 64 * 1024 * 1024


def convert_csv(
    src: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    output_columns: Any = None,
    *,
    file_index: int | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
    compression: str = DEFAULT_COMPRESSION,
    preview_rows: int = PREVIEW_ROWS,
    use_threads: bool = True,
) -> ConversionResult:
    """Stream one AMC CSV into one Parquet file typed from `output_columns`.

    A header-only file gives an empty Parquet file that still carries the schema.
    """
    src, dest = Path(src), Path(dest)
    specs = normalize_output_columns(output_columns)
    header = _read_csv_header(src, file_index)
    if header is None:  # zero bytes: no header at all; land the declared schema with no rows
        return _write_empty(src, dest, schema_for(specs), compression)
    column_types = _types_for_header(header, specs)
    read_options = pacsv.ReadOptions(block_size=block_size, use_threads=use_threads)
    parse_options = pacsv.ParseOptions(newlines_in_values=True)
    convert_options = pacsv.ConvertOptions(
        column_types=column_types,
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
        true_values=TRUE_VALUES,
        false_values=FALSE_VALUES,
        timestamp_parsers=TIMESTAMP_PARSERS,
        check_utf8=True,
    )
    writer: _RowGroupWriter | None = None
    try:
        reader = pacsv.open_csv(str(src), read_options=read_options, parse_options=parse_options,
                                convert_options=convert_options, memory_pool=memory_pool())
        writer = _RowGroupWriter(dest, reader.schema, row_group_rows=row_group_rows,
                                 compression=compression, preview_rows=preview_rows)
        for batch in reader:
            writer.add(batch)
        writer.close()
    except pa.ArrowInvalid as exc:
        if writer is not None:
            writer.abort()
        if "straddl" in str(exc) and block_size < MAX_BLOCK_SIZE:
            # A legal field longer than a read block (AMC allows long strings): read this file again
            # with larger blocks. Only this file pays the memory; others keep the small default.
            return convert_csv(src, dest, output_columns, file_index=file_index,
                               block_size=min(block_size * 16, MAX_BLOCK_SIZE), row_group_rows=row_group_rows,
                               compression=compression, preview_rows=preview_rows, use_threads=use_threads)
        line, message = _locate_csv_error(src, str(exc), len(header))
        raise ResultConversionError(f"malformed CSV: {message}", file_index=file_index, line=line) from exc
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return ConversionResult(
        source=src, path=dest, rows=writer.rows, bytes=dest.stat().st_size, schema=writer.schema,
        row_groups=writer.row_groups, preview=writer.preview,
    )


def _write_empty(src: Path, dest: Path, schema: pa.Schema, compression: str) -> ConversionResult:
    pq.write_table(schema.empty_table(), str(dest), compression=compression,
                   use_dictionary=dictionary_columns(schema))
    return ConversionResult(source=src, path=dest, rows=0, bytes=dest.stat().st_size, schema=schema,
                            row_groups=0, preview=[])


# --- JSON ---------------------------------------------------------------------------------------

_JSON_CHUNK = 1 << 20
_WS = " \t\r\n"


def _iter_json_values(src: Path, file_index: int | None) -> Iterator[tuple[int, Any]]:
    """Yield (line, record) from JSON lines, concatenated JSON objects or one JSON array, streaming.

    Why not json.load: a large result would sit in memory whole, as Python objects.
    """
    decoder = json.JSONDecoder()
    with open(src, encoding="utf-8-sig", newline="") as fh:
        buf = ""
        pos = 0
        line = 1
        eof = False
        in_array: bool | None = None
        expect_value = True

        def more() -> bool:
            nonlocal buf, pos, line, eof
            if eof:
                return False
            try:
                chunk = fh.read(_JSON_CHUNK)
            except UnicodeDecodeError as exc:
                raise ResultConversionError(f"invalid UTF-8 in JSON ({exc.reason})", file_index=file_index,
                                            line=line + buf.count("\n", 0, pos)) from exc
            if not chunk:
                eof = True
                return False
            line += buf.count("\n", 0, pos)
            buf = buf[pos:] + chunk
            pos = 0
            return True

        def skip_ws() -> bool:
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in _WS:
                    pos += 1
                if pos < len(buf):
                    return True
                if not more():
                    return False

        def here() -> int:
            return line + buf.count("\n", 0, pos)

        while True:
            if not skip_ws():
                break
            ch = buf[pos]
            if in_array is None:
                if ch == "[":
                    in_array = True
                    pos += 1
                    continue
                in_array = False
            if in_array:
                if ch == "]":
                    pos += 1
                    if skip_ws():
                        raise ResultConversionError("unexpected data after the JSON array",
                                                    file_index=file_index, line=here())
                    return
                if not expect_value:
                    if ch != ",":
                        raise ResultConversionError(f"expected ',' or ']' in the JSON array, got {ch!r}",
                                                    file_index=file_index, line=here())
                    pos += 1
                    expect_value = True
                    continue
            while True:
                try:
                    value, end = decoder.raw_decode(buf, pos)
                    # A value that ends at the buffer's end may be a number cut in two: read more.
                    if end == len(buf) and not eof and more():
                        continue
                    break
                except json.JSONDecodeError as exc:
                    if more():
                        continue
                    raise ResultConversionError(f"malformed JSON: {exc.msg}", file_index=file_index,
                                                line=here()) from exc
            start_line = here()
            pos = end
            expect_value = False
            yield start_line, value
            if not in_array:
                expect_value = True
        if in_array:
            raise ResultConversionError("unterminated JSON array", file_index=file_index, line=here())


def _json_text(value: Any, target: pa.DataType) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value if value != "" else None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and pa.types.is_integer(target) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _json_batch(records: list[tuple[int, dict[str, Any]]], schema: pa.Schema, file_index: int | None
                ) -> pa.RecordBatch:
    arrays = []
    for fld in schema:
        texts = pa.array([_json_text(rec.get(fld.name), fld.type) for _, rec in records], type=pa.string())
        if pa.types.is_string(fld.type):
            arrays.append(texts)
            continue
        try:
            arrays.append(pc.cast(texts, fld.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            bad_line = None
            for (ln, rec) in records:
                text = _json_text(rec.get(fld.name), fld.type)
                if text is None:
                    continue
                try:
                    pc.cast(pa.array([text], pa.string()), fld.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    bad_line = ln
                    break
            raise ResultConversionError(f"column {fld.name!r}: cannot convert to {fld.type}: {exc}",
                                        file_index=file_index, line=bad_line) from exc
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def convert_json(
    src: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    output_columns: Any = None,
    *,
    file_index: int | None = None,
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
    compression: str = DEFAULT_COMPRESSION,
    preview_rows: int = PREVIEW_ROWS,
    batch_rows: int = 65536,
) -> ConversionResult:
    """Stream a JSON result (JSON lines or one array of objects) into Parquet typed like CSV.

    Two passes: the first collects the keys (the Parquet schema must be fixed before writing), the
    second converts. Keys AMC did not declare become string columns.
    """
    src, dest = Path(src), Path(dest)
    specs = normalize_output_columns(output_columns)
    names = [c.name for c in specs]
    seen = set(names)
    for ln, record in _iter_json_values(src, file_index):
        if not isinstance(record, dict):
            raise ResultConversionError(f"expected JSON objects, got {type(record).__name__}",
                                        file_index=file_index, line=ln)
        for key in record:
            if key not in seen:
                seen.add(key)
                names.append(key)
    types = _types_for_header(names, specs)
    schema = pa.schema([pa.field(n, types[n]) for n in names])
    writer = _RowGroupWriter(dest, schema, row_group_rows=row_group_rows, compression=compression,
                             preview_rows=preview_rows)
    try:
        pending: list[tuple[int, dict[str, Any]]] = []
        for item in _iter_json_values(src, file_index):
            pending.append(item)
            if len(pending) >= batch_rows:
                writer.add(_json_batch(pending, schema, file_index))
                pending = []
        if pending:
            writer.add(_json_batch(pending, schema, file_index))
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return ConversionResult(source=src, path=dest, rows=writer.rows, bytes=dest.stat().st_size,
                            schema=schema, row_groups=writer.row_groups, preview=writer.preview)


def convert_file(
    src: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    output_columns: Any = None,
    *,
    kind: str = "csv",
    file_index: int | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
    compression: str = DEFAULT_COMPRESSION,
    preview_rows: int = PREVIEW_ROWS,
) -> ConversionResult:
    """Convert one downloaded result file by its recorded kind ("csv" or "json")."""
    if kind == "json":
        return convert_json(src, dest, output_columns, file_index=file_index, row_group_rows=row_group_rows,
                            compression=compression, preview_rows=preview_rows)
    if kind != "csv":
        raise ResultConversionError(f"unsupported result kind {kind!r}", file_index=file_index)
    return convert_csv(src, dest, output_columns, file_index=file_index, block_size=block_size,
                       row_group_rows=row_group_rows, compression=compression, preview_rows=preview_rows)
