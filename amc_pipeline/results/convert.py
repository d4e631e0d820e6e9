"""One downloaded AMC result file → one typed Parquet part, by the kind the download recorded.

This is the converter's entry point (results/landing.py calls it for every file). Why it is split:
each piece changes for its own reason, and a reader looking for one finds it by name:
- convert_schema: AMC `outputColumns` → Arrow types, and ResultConversionError;
- convert_csv: the streaming CSV reader (pyarrow) and how its errors are located;
- convert_json: the streaming JSON reader (lines, concatenated objects or one array);
- convert_parquet: row groups, dictionary columns, memory pool, previews and ConversionResult.
"""

from __future__ import annotations

import os
from typing import Any

from amc_pipeline.results.convert_csv import DEFAULT_BLOCK_SIZE, convert_csv
from amc_pipeline.results.convert_json import convert_json
from amc_pipeline.results.convert_parquet import (
    DEFAULT_COMPRESSION,
    DEFAULT_ROW_GROUP_ROWS,
    PREVIEW_ROWS,
    ConversionResult,
)
from amc_pipeline.results.convert_schema import ResultConversionError


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
