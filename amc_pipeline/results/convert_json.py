"""An AMC JSON result → typed Parquet, streamed: JSON lines, concatenated objects or one array.

Why a streaming reader of our own: `json.load` would hold a large result in memory whole, as Python
objects; this reads the file in chunks and decodes one record at a time.

Why two passes: the Parquet schema must be fixed before the first row group is written, and JSON
records may carry keys the first records do not. The first pass collects the keys, the second
converts. Values are typed like CSV fields: as text cast to the type `outputColumns` declares
(convert_schema), so a JSON and a CSV file of one result land the same; keys AMC did not declare
become string columns (nested values as compact JSON text).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from amc_pipeline.results.convert_parquet import (
    DEFAULT_COMPRESSION,
    DEFAULT_ROW_GROUP_ROWS,
    PREVIEW_ROWS,
    ConversionResult,
    RowGroupWriter,
)
from amc_pipeline.results.convert_schema import (
    ResultConversionError,
    normalize_output_columns,
    types_for_header,
)

#: Characters read at a time; a record may span chunks (the reader then reads more and retries).
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
    types = types_for_header(names, specs)
    schema = pa.schema([pa.field(n, types[n]) for n in names])
    writer = RowGroupWriter(dest, schema, row_group_rows=row_group_rows, compression=compression,
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
    return writer.result(src)
