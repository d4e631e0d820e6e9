"""Iceberg landing: one window = one partition, replaced in one atomic commit.

Real parts (pyarrow.parquet.write_table), real SQL catalogs (SQLite file and PostgreSQL), a real
warehouse (tmp dir, and S3 served by moto on 127.0.0.1). No mocks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.catalog import load_catalog
from pyiceberg.expressions import EqualTo
from pyiceberg.table import Table
from pyiceberg.transforms import IdentityTransform

from amc_pipeline.results.iceberg import (
    IcebergSchemaError,
    IcebergSettings,
    commit_window,
    load_catalog_for,
)
from amc_pipeline_tests.pg import require_postgres, temp_database
from amc_pipeline_tests.s3 import FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY, aws_env, s3_server

WF = "campaign_daily"
KEY = "2026-10-05"
OTHER = "2026-10-06"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def catalog_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The SQL catalog's database: a SQLite file, or a fresh PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/catalog.db"
        return
    require_postgres()
    with temp_database("amc_iceberg") as url:
        yield url


@pytest.fixture
def settings(catalog_uri: str, tmp_path: Path) -> IcebergSettings:
    return IcebergSettings(catalog_uri=catalog_uri, warehouse=str(tmp_path / "warehouse"))


def write_part(path: Path, attempt: str, rows: int, *, extra: dict[str, pa.Array] | None = None) -> Path:
    """A typed part like the converter writes: no window column, an attempt marker on every row."""
    columns: dict[str, pa.Array] = {
        "campaign_id": pa.array(range(rows), pa.int64()),
        "impressions": pa.array([i * 10 for i in range(rows)], pa.int64()),
        "spend": pa.array([i / 4 for i in range(rows)], pa.float64()),
        "day": pa.array([None] * rows, pa.date32()),
        "attempt": pa.array([attempt] * rows, pa.string()),
    }
    columns.update(extra or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path, row_group_size=max(1, rows // 3 or 1))
    return path


def table_of(settings: IcebergSettings) -> Table:
    return load_catalog_for(settings).load_table(f"{settings.namespace}.{WF}")


def window_rows(table: Table, key: str) -> pa.Table:
    return table.refresh().scan(row_filter=EqualTo("window_start", key)).to_arrow()


def data_files_on_disk(settings: IcebergSettings) -> set[Path]:
    return {p for p in Path(settings.warehouse).rglob("*.parquet")}


# --- creation, readers -----------------------------------------------------------------------


def test_first_commit_creates_table_partitioned_by_window(settings: IcebergSettings, tmp_path: Path) -> None:
    part = write_part(tmp_path / "a" / "part-0.parquet", "A", 25)
    result = commit_window(settings, WF, KEY, [part])

    table = table_of(settings)
    assert result.table_name == f"amc.{WF}"
    assert result.rows == 25
    assert result.uri == table.location()
    assert result.snapshot_id == table.current_snapshot().snapshot_id  # type: ignore[union-attr]
    assert len(table.history()) == 1
    (spec_field,) = table.spec().fields
    assert isinstance(spec_field.transform, IdentityTransform)
    assert table.schema().find_field(spec_field.source_id).name == "window_start"
    assert result.schema.names == ["campaign_id", "impressions", "spend", "day", "attempt", "window_start"]
    landed = window_rows(table, KEY)
    assert landed.num_rows == 25
    assert set(landed["window_start"].to_pylist()) == {KEY}
    # Every data file of the window sits in the window's partition.
    files = table.inspect.files()
    assert {rec["window_start"] for rec in files["partition"].to_pylist()} == {KEY}


def test_pyiceberg_and_pyarrow_read_the_landed_rows(settings: IcebergSettings, tmp_path: Path) -> None:
    commit_window(settings, WF, KEY, [write_part(tmp_path / "a.parquet", "A", 12)])
    commit_window(settings, WF, OTHER, [write_part(tmp_path / "b.parquet", "B", 7)])
    table = table_of(settings)

    scanned = table.scan().to_arrow()
    assert scanned.num_rows == 19
    assert sorted(scanned.group_by("window_start").aggregate([("attempt", "count")]).to_pylist(), key=str) == sorted(
        [{"window_start": KEY, "attempt_count": 12}, {"window_start": OTHER, "attempt_count": 7}], key=str
    )
    # Plain pyarrow over the table's live data files (what any Parquet reader would see).
    paths = table.inspect.files()["file_path"].to_pylist()
    read = pa.concat_tables([pq.read_table(p) for p in paths])
    assert read.num_rows == 19
    assert sorted(read["attempt"].to_pylist()) == ["A"] * 12 + ["B"] * 7


def test_duckdb_iceberg_scan_reads_the_landed_rows(settings: IcebergSettings, tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    commit_window(settings, WF, KEY, [write_part(tmp_path / "a.parquet", "A", 12)])
    table = table_of(settings)
    con = duckdb.connect()
    try:
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
        con.execute("LOAD iceberg")
    except Exception as exc:  # noqa: BLE001 - any load failure means "not available offline here"
        pytest.skip(f"DuckDB iceberg extension cannot load offline here: {str(exc).splitlines()[0]}")
    count = con.execute("SELECT count(*) FROM iceberg_scan(?)", [table.metadata_location]).fetchone()
    assert count == (12,)


# --- atomic replace --------------------------------------------------------------------------


def test_replace_is_one_snapshot_and_touches_only_its_window(settings: IcebergSettings, tmp_path: Path) -> None:
    commit_window(settings, WF, KEY, [write_part(tmp_path / "a1.parquet", "A", 30)], batch_rows=7)
    commit_window(settings, WF, OTHER, [write_part(tmp_path / "o.parquet", "O", 5)])
    table = table_of(settings)
    history_before = len(table.history())
    metadata_before = table.metadata_location
    log_before = len(table.metadata.metadata_log)

    parts = [write_part(tmp_path / "b1.parquet", "B", 11), write_part(tmp_path / "b2.parquet", "B", 9)]
    result = commit_window(settings, WF, KEY, parts, batch_rows=4)

    table.refresh()
    assert len(table.history()) == history_before + 1  # one snapshot, not one per batch or per delete
    assert len(table.metadata.metadata_log) == log_before + 1  # one metadata change
    assert table.metadata_location != metadata_before
    snapshot = table.current_snapshot()
    assert snapshot is not None and snapshot.snapshot_id == result.snapshot_id
    assert snapshot.summary is not None
    assert snapshot.summary.operation.value == "overwrite"
    assert snapshot.summary["amc.window"] == KEY
    assert result.rows == 20
    window = window_rows(table, KEY)
    assert window.num_rows == 20 and set(window["attempt"].to_pylist()) == {"B"}
    other = window_rows(table, OTHER)
    assert other.num_rows == 5 and set(other["attempt"].to_pylist()) == {"O"}


def test_batches_are_streamed_into_bounded_data_files(settings: IcebergSettings, tmp_path: Path) -> None:
    part = write_part(tmp_path / "big.parquet", "A", 95)
    result = commit_window(settings, WF, KEY, [part], batch_rows=10)
    table = table_of(settings)
    counts = table.inspect.files()["record_count"].to_pylist()
    assert result.rows == sum(counts) == 95
    assert max(counts) <= 10  # no data file holds more than one batch: the window never sat in memory whole


def test_concurrent_reader_never_sees_a_mix_or_an_empty_window(settings: IcebergSettings, tmp_path: Path) -> None:
    rows_of = {f"attempt-{i}": 40 + 7 * i for i in range(8)}
    part_of = {a: write_part(tmp_path / a / "part.parquet", a, n) for a, n in rows_of.items()}
    commit_window(settings, WF, KEY, [part_of["attempt-0"]], batch_rows=6)

    # The reader has its own catalog object (its own engine, its own FileIO), like another process.
    reader_catalog = load_catalog(
        settings.catalog_name, type="sql", uri=settings.catalog_uri, warehouse=str(Path(settings.warehouse).resolve())
    )
    reader_table = reader_catalog.load_table(f"amc.{WF}")
    stop = threading.Event()
    problems: list[str] = []
    scans: list[str] = []

    def read_loop() -> None:
        try:
            while not stop.is_set():
                rows = reader_table.refresh().scan(row_filter=EqualTo("window_start", KEY)).to_arrow()
                markers = set(rows["attempt"].to_pylist())
                if len(markers) != 1:
                    problems.append(f"scan {len(scans)}: attempts {sorted(markers)} in {rows.num_rows} rows")
                    continue
                (marker,) = markers
                if rows.num_rows != rows_of[marker]:
                    problems.append(f"scan {len(scans)}: {rows.num_rows} rows of {marker}, expected {rows_of[marker]}")
                scans.append(marker)
        except Exception as exc:  # noqa: BLE001 - reported to the test thread
            problems.append(f"reader failed: {type(exc).__name__}: {exc}")

    reader = threading.Thread(target=read_loop, name="iceberg-reader", daemon=True)
    reader.start()
    try:
        for attempt in list(rows_of)[1:]:
            commit_window(settings, WF, KEY, [part_of[attempt]], batch_rows=6)  # several data files per attempt
            time.sleep(0.05)
    finally:
        stop.set()
        reader.join(timeout=60)
    assert not reader.is_alive()
    assert problems == []
    assert len(scans) >= 5, f"the reader only completed {len(scans)} scans"
    assert len(set(scans)) >= 2, "the reader never saw a replacement happen"
    final = window_rows(table_of(settings), KEY)
    assert set(final["attempt"].to_pylist()) == {"attempt-7"} and final.num_rows == rows_of["attempt-7"]


# --- schema evolution ------------------------------------------------------------------------


def test_new_column_is_added_and_missing_columns_are_null(settings: IcebergSettings, tmp_path: Path) -> None:
    commit_window(settings, WF, OTHER, [write_part(tmp_path / "o.parquet", "O", 4)])
    table = table_of(settings)
    history_before = len(table.history())

    extra = {"clicks": pa.array([1, 2, 3], pa.int64())}
    result = commit_window(settings, WF, KEY, [write_part(tmp_path / "n.parquet", "N", 3, extra=extra)])

    table.refresh()
    assert len(table.history()) == history_before + 1  # schema change and data in the same commit
    assert "clicks" in result.schema.names and result.schema.field("clicks").type == pa.int64()
    assert table.scan(row_filter=EqualTo("window_start", OTHER)).to_arrow()["clicks"].null_count == 4
    assert window_rows(table, KEY)["clicks"].to_pylist() == [1, 2, 3]

    # A later window without the column: nulls, the column stays.
    third = commit_window(settings, WF, "2026-10-07", [write_part(tmp_path / "t.parquet", "T", 2)])
    assert "clicks" in third.schema.names
    assert window_rows(table, "2026-10-07")["clicks"].to_pylist() == [None, None]


def test_widened_type_is_promoted(settings: IcebergSettings, tmp_path: Path) -> None:
    narrow = {"clicks": pa.array([1, 2], pa.int32())}
    commit_window(settings, WF, KEY, [write_part(tmp_path / "a.parquet", "A", 2, extra=narrow)])
    assert str(table_of(settings).schema().find_field("clicks").field_type) == "int"
    wide = {"clicks": pa.array([2**40, 5], pa.int64())}
    result = commit_window(settings, WF, OTHER, [write_part(tmp_path / "b.parquet", "B", 2, extra=wide)])
    assert result.schema.field("clicks").type == pa.int64()
    assert window_rows(table_of(settings), OTHER)["clicks"].to_pylist() == [2**40, 5]
    # And narrower data again is cast to the table's type.
    commit_window(settings, WF, KEY, [write_part(tmp_path / "c.parquet", "C", 2, extra=narrow)])
    assert window_rows(table_of(settings), KEY)["clicks"].to_pylist() == [1, 2]


def test_unpromotable_retype_names_column_and_types_and_changes_nothing(
    settings: IcebergSettings, tmp_path: Path
) -> None:
    commit_window(settings, WF, KEY, [write_part(tmp_path / "a.parquet", "A", 3)])
    table = table_of(settings)
    before = (table.metadata_location, len(table.history()))
    files_before = data_files_on_disk(settings)

    retyped = {"impressions": pa.array(["many", "few"], pa.string())}
    with pytest.raises(IcebergSchemaError, match=r"'impressions'.*long.*string"):
        commit_window(settings, WF, KEY, [write_part(tmp_path / "b.parquet", "B", 2, extra=retyped)])

    table.refresh()
    assert (table.metadata_location, len(table.history())) == before
    assert data_files_on_disk(settings) == files_before
    assert set(window_rows(table, KEY)["attempt"].to_pylist()) == {"A"}


# --- empty windows and failures ----------------------------------------------------------------


def test_empty_window_deletes_the_rows_and_still_commits(settings: IcebergSettings, tmp_path: Path) -> None:
    commit_window(settings, WF, KEY, [write_part(tmp_path / "a.parquet", "A", 8)])
    commit_window(settings, WF, OTHER, [write_part(tmp_path / "o.parquet", "O", 3)])
    table = table_of(settings)
    history_before = len(table.history())

    result = commit_window(settings, WF, KEY, [write_part(tmp_path / "empty.parquet", "E", 0)])

    table.refresh()
    assert result.rows == 0
    assert len(table.history()) == history_before + 1
    assert table.current_snapshot().snapshot_id == result.snapshot_id  # type: ignore[union-attr]
    assert window_rows(table, KEY).num_rows == 0
    assert window_rows(table, OTHER).num_rows == 3


def test_empty_first_window_creates_the_table_and_commits(settings: IcebergSettings, tmp_path: Path) -> None:
    result = commit_window(settings, WF, KEY, [write_part(tmp_path / "empty.parquet", "E", 0)])
    table = table_of(settings)
    assert result.rows == 0 and len(table.history()) == 1
    assert window_rows(table, KEY).num_rows == 0


def corrupt_pages(path: Path) -> Path:
    """Overwrite bytes in the middle of a part: footer (schema) readable, later pages not."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 400] = b"\xab" * 400
    path.write_bytes(bytes(data))
    return path


def test_failure_mid_way_leaves_the_window_as_it_was(settings: IcebergSettings, tmp_path: Path) -> None:
    commit_window(settings, WF, KEY, [write_part(tmp_path / "a.parquet", "A", 30)])
    table = table_of(settings)
    before = (table.metadata_location, len(table.history()), table.current_snapshot().snapshot_id)  # type: ignore[union-attr]
    files_before = data_files_on_disk(settings)

    good = write_part(tmp_path / "b" / "part-0.parquet", "B", 50)
    bad = corrupt_pages(write_part(tmp_path / "b" / "part-1.parquet", "B", 1000))
    assert pq.read_schema(bad).names  # the footer is intact: the failure comes while appending
    with pytest.raises(OSError):
        commit_window(settings, WF, KEY, [good, bad], batch_rows=20)

    table.refresh()
    assert (table.metadata_location, len(table.history()), table.current_snapshot().snapshot_id) == before  # type: ignore[union-attr]
    window = window_rows(table, KEY)
    assert window.num_rows == 30 and set(window["attempt"].to_pylist()) == {"A"}
    assert data_files_on_disk(settings) == files_before  # the data files written before the failure are gone

    # And the next attempt lands normally.
    ok = commit_window(settings, WF, KEY, [good])
    assert ok.rows == 50 and set(window_rows(table, KEY)["attempt"].to_pylist()) == {"B"}


def test_parts_must_not_carry_the_window_column(settings: IcebergSettings, tmp_path: Path) -> None:
    bad = write_part(tmp_path / "a.parquet", "A", 2, extra={"window_start": pa.array(["x", "y"])})
    with pytest.raises(IcebergSchemaError, match="window_start"):
        commit_window(settings, WF, KEY, [bad])


# --- S3 warehouse and secrets ------------------------------------------------------------------


def test_s3_warehouse_on_moto(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with s3_server() as s3:
        for name, value in aws_env(s3.endpoint_url).items():
            monkeypatch.setenv(name, value)
        s3.client.create_bucket(Bucket="lake")
        settings = IcebergSettings(catalog_uri=f"sqlite:///{tmp_path}/catalog.db", warehouse="s3://lake/iceberg")

        commit_window(settings, WF, KEY, [write_part(tmp_path / "a.parquet", "A", 10)], batch_rows=4)
        result = commit_window(settings, WF, KEY, [write_part(tmp_path / "b.parquet", "B", 6)])

        assert result.uri.startswith("s3://lake/iceberg/")
        table = table_of(settings)
        window = window_rows(table, KEY)
        assert window.num_rows == 6 and set(window["attempt"].to_pylist()) == {"B"}
        keys = [o["Key"] for o in s3.client.list_objects_v2(Bucket="lake", Prefix="iceberg/")["Contents"]]
        assert any(k.endswith(".parquet") and "window_start=" + KEY in k for k in keys)
        assert any(k.endswith(".metadata.json") for k in keys)

        # Credentials come from the environment, and never show in reprs or error text.
        assert FAKE_SECRET_ACCESS_KEY not in repr(settings)
        assert FAKE_SECRET_ACCESS_KEY not in repr(load_catalog_for(settings))
        missing = IcebergSettings(catalog_uri=f"sqlite:///{tmp_path}/other.db", warehouse="s3://no-such-bucket/x")
        with pytest.raises(Exception) as info:  # noqa: PT011 - whatever S3 says, it must not quote the key
            commit_window(missing, WF, KEY, [write_part(tmp_path / "c.parquet", "C", 2)])
        text = "".join(str(e) for e in (info.value, info.value.__cause__, info.value.__context__) if e)
        assert FAKE_SECRET_ACCESS_KEY not in text and FAKE_ACCESS_KEY_ID not in text


def test_settings_repr_masks_secrets() -> None:
    settings = IcebergSettings(
        catalog_uri="postgresql+psycopg2://amc:hunter2-secret@db.example:5432/amc",
        warehouse="s3://lake/x",
        properties={"s3.secret-access-key": "abcd-secret-value", "s3.endpoint": "http://127.0.0.1:9000"},
    )
    text = repr(settings)
    assert "hunter2-secret" not in text and "abcd-secret-value" not in text
    assert "http://127.0.0.1:9000" in text and "db.example" in text


def test_two_windows_landing_at_once_both_land(settings: IcebergSettings, tmp_path: Path) -> None:
    """Concurrent commits to different windows conflict at the catalog; pyiceberg retries, both land."""
    commit_window(settings, WF, "2026-10-01", [write_part(tmp_path / "seed.parquet", "S", 1)])
    keys = [f"2026-10-1{i}" for i in range(4)]
    parts = {k: write_part(tmp_path / k / "p.parquet", k, 10 + i) for i, k in enumerate(keys)}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(keys))

    def land(key: str) -> None:
        try:
            barrier.wait(timeout=30)
            commit_window(settings, WF, key, [parts[key]], batch_rows=3)
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=land, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    table = table_of(settings)
    for i, k in enumerate(keys):
        rows = window_rows(table, k)
        assert rows.num_rows == 10 + i and set(rows["attempt"].to_pylist()) == {k}
