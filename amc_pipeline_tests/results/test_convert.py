"""Converter rules on small files written in tmp_path: types, nulls, quoting, JSON, errors."""

import datetime as dt
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from amc_pipeline.amc.models import OutputColumn
from amc_pipeline.results.convert import convert_file
from amc_pipeline.results.convert_csv import convert_csv
from amc_pipeline.results.convert_json import convert_json
from amc_pipeline.results.convert_schema import ResultConversionError, arrow_type_for, schema_for

COLUMNS = [
    {"name": "id", "dataType": "LONG"},
    {"name": "spend", "dataType": "DOUBLE"},
    {"name": "name", "dataType": "STRING"},
    {"name": "day", "dataType": "DATE"},
    {"name": "ts", "dataType": "TIMESTAMP"},
    {"name": "flag", "dataType": "BOOLEAN"},
    {"name": "amount", "dataType": "DECIMAL"},
]


def write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def convert(tmp_path, data: bytes, columns=COLUMNS, **kwargs):
    src = write(tmp_path, "in.csv", data)
    dest = tmp_path / "out.parquet"
    result = convert_csv(src, dest, columns, file_index=3, **kwargs)
    table = pq.read_table(dest)
    assert result.rows == table.num_rows == pq.read_metadata(dest).num_rows
    return result, table


def test_type_mapping():
    assert arrow_type_for("LONG") == pa.int64()
    assert arrow_type_for("DOUBLE") == pa.float64()
    assert arrow_type_for("STRING") == pa.string()
    assert arrow_type_for("DATE") == pa.date32()
    assert arrow_type_for("TIMESTAMP") == pa.timestamp("ms")
    assert arrow_type_for("BOOLEAN") == pa.bool_()
    assert arrow_type_for("DECIMAL") == pa.string()
    assert arrow_type_for(None) == pa.string()


def test_all_types_and_nulls(tmp_path):
    data = (
        b"id,spend,name,day,ts,flag,amount\n"
        b"1,1.5,a,2024-01-02,2024-01-02T03:04:05.678,true,1.10\n"
        b",,,,,,\n"
        b"9007199254740993,-2e3,b,2024-12-31,2024-12-31T23:59:59,false,0001\n"
    )
    result, table = convert(tmp_path, data)
    assert table.schema == pa.schema([
        ("id", pa.int64()), ("spend", pa.float64()), ("name", pa.string()), ("day", pa.date32()),
        ("ts", pa.timestamp("ms")), ("flag", pa.bool_()), ("amount", pa.string()),
    ])
    rows = table.to_pylist()
    assert rows[0] == {"id": 1, "spend": 1.5, "name": "a", "day": dt.date(2024, 1, 2),
                       "ts": dt.datetime(2024, 1, 2, 3, 4, 5, 678000), "flag": True, "amount": "1.10"}
    assert rows[1] == dict.fromkeys(rows[1])  # every empty field is null, strings included
    # int64 exact beyond float precision; timestamps without millis; leading zeros kept in strings
    assert rows[2]["id"] == 9007199254740993
    assert rows[2]["ts"] == dt.datetime(2024, 12, 31, 23, 59, 59)
    assert rows[2]["amount"] == "0001"
    assert result.preview[0]["ts"] == "2024-01-02T03:04:05.678000"
    json.dumps(result.preview)


def test_long_with_nulls_stays_int64(tmp_path):
    data = b"id\n" + b"".join(b"%d\n" % i if i % 3 else b"\n" for i in range(1, 1000))
    # A lone empty line would be skipped as a blank line by CSV readers: use two columns.
    data = b"id,x\n" + b"".join((b"%d,x\n" % i) if i % 3 else b",x\n" for i in range(1, 1000))
    _, table = convert(tmp_path, data, [{"name": "id", "dataType": "LONG"}], block_size=256)
    assert table.schema.field("id").type == pa.int64()
    assert table.column("id").null_count == 333
    assert table.column("id").to_pylist()[:3] == [1, 2, None]
    assert table.schema.field("x").type == pa.string()  # not declared → string


def test_quoting_newlines_unicode_round_trip(tmp_path):
    values = ['Acme, Inc.', 'The "Best" Brand', "Line one\nline two", "Mixed, \"q\"\r\nand more",
              "Café Zürich – 東京 ✓", "Ελληνικά", "trailing space ", " leading", "emoji 🎉", "semi;colon"]
    import csv
    import io
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["n", "value"])
    for i, v in enumerate(values):
        writer.writerow([i, v])
    _, table = convert(tmp_path, buf.getvalue().encode("utf-8"),
                       [{"name": "n", "dataType": "LONG"}, {"name": "value", "dataType": "STRING"}],
                       block_size=64)
    assert table.column("value").to_pylist() == values
    assert table.column("n").to_pylist() == list(range(len(values)))


def test_quoted_empty_is_null_too(tmp_path):
    _, table = convert(tmp_path, b'a,b\n"",x\n', [{"name": "a", "dataType": "STRING"}])
    assert table.column("a").to_pylist() == [None]


def test_unknown_columns_and_missing_output_columns_are_strings(tmp_path):
    data = b"id,extra\n1,2\n3,4\n"
    _, table = convert(tmp_path, data, None)
    assert table.schema == pa.schema([("id", pa.string()), ("extra", pa.string())])
    assert table.column("id").to_pylist() == ["1", "3"]
    _, table = convert(tmp_path, data, [OutputColumn("id", "LONG")])  # AmcExecution.output_columns shape
    assert table.schema == pa.schema([("id", pa.int64()), ("extra", pa.string())])


def test_header_only_gives_empty_file_with_schema(tmp_path):
    result, table = convert(tmp_path, b"id,spend,name,day,ts,flag,amount\n")
    assert table.num_rows == 0 and result.rows == 0
    assert table.schema.field("ts").type == pa.timestamp("ms")
    assert table.schema.field("id").type == pa.int64()


def test_zero_byte_file_uses_declared_schema(tmp_path):
    result, table = convert(tmp_path, b"")
    assert table.num_rows == 0
    assert table.schema == schema_for(COLUMNS)


def test_rebatching_makes_sensible_row_groups(tmp_path):
    data = b"id,name\n" + b"".join(b"%d,name %d\n" % (i, i) for i in range(50_000))
    result, table = convert(tmp_path, data, [{"name": "id", "dataType": "LONG"}], block_size=4096,
                            row_group_rows=20_000)
    meta = pq.read_metadata(tmp_path / "out.parquet")
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [20_000, 20_000, 10_000]
    assert table.column("id").to_pylist() == list(range(50_000))


def test_bom_is_ignored(tmp_path):
    _, table = convert(tmp_path, b"\xef\xbb\xbfid\n1\n", [{"name": "id", "dataType": "LONG"}])
    assert table.schema.names == ["id"]
    assert table.column("id").to_pylist() == [1]


@pytest.mark.parametrize(
    ("data", "line", "needle"),
    [
        (b"id,name\n1,a\n2,b\n3\n4,d\n", 4, "Expected 2 columns"),
        (b"id,name\n1,a\n2,b,c\n", 3, "Expected 2 columns"),
        (b'id,name\n1,"multi\nline"\nx,b\n', 4, "invalid value 'x'"),
        (b"id,name\n1,a\n2,\xff\xfeb\n", 3, "invalid UTF-8"),
    ],
)
def test_malformed_csv_names_file_and_line(tmp_path, data, line, needle):
    with pytest.raises(ResultConversionError) as info:
        convert(tmp_path, data, [{"name": "id", "dataType": "LONG"}])
    assert info.value.file_index == 3
    assert info.value.line == line
    assert "result file 3" in str(info.value) and f"line {line}" in str(info.value)
    assert needle in str(info.value)


def test_bad_timestamp_is_an_error(tmp_path):
    with pytest.raises(ResultConversionError, match="timestamp"):
        convert(tmp_path, b"ts\n2024-13-45T99:00:00\n", [{"name": "ts", "dataType": "TIMESTAMP"}])


def test_json_lines_and_array(tmp_path):
    records = [
        {"id": 1, "spend": 1.5, "name": "a, \"b\"\nc", "day": "2024-01-02", "ts": "2024-01-02T03:04:05.678",
         "flag": True, "amount": 1.1},
        {"id": None, "spend": None, "name": "", "day": None, "ts": "2024-01-02T03:04:05", "flag": "false",
         "extra": {"k": [1, 2]}},
        {"id": 3.0, "spend": 2, "name": "東京", "day": "2024-01-03", "ts": None, "flag": None},
    ]
    lines = write(tmp_path, "a.json", "\n".join(json.dumps(r, ensure_ascii=False) for r in records).encode())
    array = write(tmp_path, "b.json", json.dumps(records, indent=2).encode())
    for src in (lines, array):
        dest = tmp_path / f"{src.stem}.parquet"
        result = convert_file(src, dest, COLUMNS, kind="json", file_index=0)
        table = pq.read_table(dest)
        assert result.rows == 3
        assert table.schema.field("id").type == pa.int64()
        assert table.schema.field("ts").type == pa.timestamp("ms")
        assert table.schema.field("extra").type == pa.string()
        rows = table.to_pylist()
        assert rows[0]["name"] == 'a, "b"\nc'
        assert rows[0]["ts"] == dt.datetime(2024, 1, 2, 3, 4, 5, 678000)
        assert rows[1]["id"] is None and rows[1]["name"] is None and rows[1]["flag"] is False
        assert json.loads(rows[1]["extra"]) == {"k": [1, 2]}
        assert rows[2]["id"] == 3 and rows[2]["spend"] == 2.0 and rows[2]["name"] == "東京"


def test_json_small_chunks_and_empty(tmp_path, monkeypatch):
    import amc_pipeline.results.convert_json as conv
    monkeypatch.setattr(conv, "_JSON_CHUNK", 7)
    records = [{"id": i, "name": f"n{i} ✓"} for i in range(200)]
    src = write(tmp_path, "a.json", json.dumps(records).encode())
    result = convert_json(src, tmp_path / "a.parquet", [{"name": "id", "dataType": "LONG"}], batch_rows=33)
    assert pq.read_table(tmp_path / "a.parquet").to_pylist() == records
    assert result.rows == 200
    src = write(tmp_path, "e.json", b"[]")
    result = convert_json(src, tmp_path / "e.parquet", COLUMNS)
    assert result.rows == 0 and pq.read_table(tmp_path / "e.parquet").schema == schema_for(COLUMNS)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b'{"id": 1}\n{"id": 2\n', "malformed JSON"),
        (b'[{"id": 1} {"id": 2}]', "expected ','"),
        (b'[{"id": 1}', "unterminated"),
        (b"[1, 2]", "expected JSON objects"),
        (b'{"id": "x"}', "cannot convert"),
    ],
)
def test_malformed_json(tmp_path, data, needle):
    src = write(tmp_path, "bad.json", data)
    with pytest.raises(ResultConversionError, match=needle) as info:
        convert_json(src, tmp_path / "bad.parquet", [{"name": "id", "dataType": "LONG"}], file_index=2)
    assert info.value.file_index == 2


def test_a_ten_megabyte_field_lands_exactly(tmp_path):
    """A legal field longer than a read block is read again with larger blocks, not refused."""
    import pyarrow.parquet as pq

    from amc_pipeline.results.convert_csv import convert_csv

    big = "x" * (10 * 1024 * 1024) + ', "quoted"\nnewline ü'
    src = tmp_path / "big.csv"
    src.write_bytes(b'a,b\n1,"' + big.replace('"', '""').encode() + b'"\n2,short\n')
    result = convert_csv(src, tmp_path / "big.parquet", [{"name": "a", "dataType": "LONG"},
                                                         {"name": "b", "dataType": "STRING"}])
    table = pq.read_table(tmp_path / "big.parquet")
    assert result.rows == 2
    assert table["a"].to_pylist() == [1, 2]
    assert table["b"].to_pylist() == [big, "short"]
