"""An AMC CSV result → typed Parquet, streamed block by block with pyarrow's CSV reader.

Why streaming: a result can be gigabytes; reading it whole (the original system built a list of dicts)
costs memory proportional to the file. pyarrow's streaming CSV reader parses small blocks, which
convert_parquet.RowGroupWriter re-batches into sensible row groups.

Why these parse rules: columns are typed from `outputColumns` (convert_schema), never inferred; empty
fields are nulls (AMC: "empty means null"), in string columns too; fields may hold quoted newlines.
pyarrow reports most errors without a line, so on failure the file is re-read with the csv module
(slow path, errors only) to name the line.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from amc_pipeline.results.convert_parquet import (
    DEFAULT_COMPRESSION,
    DEFAULT_ROW_GROUP_ROWS,
    PREVIEW_ROWS,
    ConversionResult,
    RowGroupWriter,
    memory_pool,
    write_empty,
)
from amc_pipeline.results.convert_schema import (
    ResultConversionError,
    normalize_output_columns,
    schema_for,
    types_for_header,
)

#: Chosen from benchmarks/landing.py figures (2 cores, ~100 B rows): 1 MiB blocks keep the reader's
#: working set small.
DEFAULT_BLOCK_SIZE = 1 << 20
#: The largest read block tried for a file with very long fields (each retry multiplies by 16).
MAX_BLOCK_SIZE = 64 * 1024 * 1024

#: AMC TIMESTAMP is `yyyy-MM-ddTHH:mm:ss.SSS`; also accept it without millis (and with a space).
TIMESTAMP_PARSERS = [
    pacsv.ISO8601,
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
]

TRUE_VALUES = ["true", "True", "TRUE", "1"]
FALSE_VALUES = ["false", "False", "FALSE", "0"]


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
        schema = schema_for(specs)
        write_empty(dest, schema, compression)
        return ConversionResult(source=src, path=dest, rows=0, bytes=dest.stat().st_size, schema=schema,
                                row_groups=0, preview=[])
    column_types = types_for_header(header, specs)
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
    writer: RowGroupWriter | None = None
    try:
        reader = pacsv.open_csv(str(src), read_options=read_options, parse_options=parse_options,
                                convert_options=convert_options, memory_pool=memory_pool())
        writer = RowGroupWriter(dest, reader.schema, row_group_rows=row_group_rows,
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
    return writer.result(src)
