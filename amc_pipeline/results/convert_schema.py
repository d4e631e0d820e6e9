"""AMC `outputColumns` → the Arrow schema of a landed result, and the error every converter raises.

Why types come from `outputColumns`: AMC declares each column's type; inferring from the data would
turn a LONG column with nulls into floats, or a numeric-looking STRING into numbers, and two files
of the same result could disagree. A column AMC did not declare (or every column, when a result
comes without outputColumns) is a string: never guessed.

The CSV and JSON readers (convert_csv, convert_json) both type their columns from here, so the two
formats of one result land with the same schema.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

#: AMC `dataType` → Arrow type. Anything else lands as string (never guessed).
AMC_TYPE_MAP: dict[str, pa.DataType] = {
    "LONG": pa.int64(),
    "DOUBLE": pa.float64(),
    "STRING": pa.string(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("ms"),
    "BOOLEAN": pa.bool_(),
}


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


def types_for_header(header: Sequence[str], specs: Sequence[ColumnSpec]) -> dict[str, pa.DataType]:
    """The Arrow type of each column a file actually has (CSV header, JSON keys), declared or string."""
    declared = {c.name: arrow_type_for(c.data_type) for c in specs}
    # Columns AMC did not declare (or all, without outputColumns) are strings: never inferred.
    return {name: declared.get(name, pa.string()) for name in header}
