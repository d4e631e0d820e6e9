"""Partition layout: hive paths readable by pyarrow/pandas/DuckDB; swaps are all-or-nothing."""

import os

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from amc_pipeline.results import layout
from amc_pipeline.results.convert_csv import convert_csv
from amc_pipeline.results.layout import StagedPartition, clean_stale, partition_dir

COLUMNS = [{"name": "id", "dataType": "LONG"}, {"name": "name", "dataType": "STRING"}]


def land_local(data_dir, key, contents: list[bytes], fail_at: int | None = None):
    """Land CSV contents into a partition the way landing.py does, optionally failing at file `fail_at`."""
    with StagedPartition(data_dir, "wf", key) as staged:
        for i, data in enumerate(contents):
            src = staged.staging.parent / f"src-{i}.csv"
            src.write_bytes(data)
            try:
                if i == fail_at:
                    # Half a file is on disk in staging when the failure hits.
                    staged.path_for(i).write_bytes(b"PAR1 partial")
                    raise RuntimeError("converter died on file 2")
                convert_csv(src, staged.path_for(i), COLUMNS, file_index=i)
            finally:
                src.unlink()
        return staged.commit()


def visible_files(data_dir):
    return sorted(str(p.relative_to(data_dir)) for p in (data_dir / "results").rglob("*") if p.is_file())


def test_paths_and_hive_readers(tmp_path):
    land_local(tmp_path, "2024-01-01", [b"id,name\n1,a\n2,b\n", b"id,name\n3,c\n"])
    land_local(tmp_path, "2024-01-02", [b"id,name\n4,d\n"])
    target = partition_dir(tmp_path, "wf", "2024-01-01")
    assert target == tmp_path / "results" / "wf" / "window_start=2024-01-01"
    assert sorted(p.name for p in target.iterdir()) == ["part-0000.parquet", "part-0001.parquet"]
    root = tmp_path / "results" / "wf"
    table = ds.dataset(root, format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 4 and "window_start" in table.column_names
    frame = pd.read_parquet(root)
    assert sorted(frame["id"].tolist()) == [1, 2, 3, 4]
    rows = duckdb.sql(
        f"select window_start::varchar, count(*) from read_parquet('{root}/*/*.parquet', "
        "hive_partitioning=true) group by 1 order by 1"
    ).fetchall()
    assert rows == [("2024-01-01", 3), ("2024-01-02", 1)]
    # Nothing but the two partitions is left beside them (no staging, no set-aside dirs).
    assert sorted(p.name for p in root.iterdir()) == ["window_start=2024-01-01", "window_start=2024-01-02"]


def test_failure_mid_write_keeps_previous_version(tmp_path):
    land_local(tmp_path, "2024-01-01", [b"id,name\n1,old\n", b"id,name\n2,old\n"])
    before = visible_files(tmp_path)
    with pytest.raises(RuntimeError, match="file 2"):
        land_local(tmp_path, "2024-01-01", [b"id,name\n1,new\n", b"id,name\n2,new\n", b"id,name\n3,new\n"],
                   fail_at=1)
    assert visible_files(tmp_path) == before  # no partial file anywhere, staging removed
    table = pq.read_table(partition_dir(tmp_path, "wf", "2024-01-01"))
    assert table.column("name").to_pylist() == ["old", "old"]
    # A successful landing then replaces it completely (fewer parts than before: none left over).
    land_local(tmp_path, "2024-01-01", [b"id,name\n9,new\n"])
    target = partition_dir(tmp_path, "wf", "2024-01-01")
    assert [p.name for p in target.iterdir()] == ["part-0000.parquet"]
    assert pq.read_table(target).column("name").to_pylist() == ["new"]


def test_failure_on_first_landing_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        land_local(tmp_path, "2024-01-01", [b"id,name\n1,a\n", b"id,name\n2,b\n"], fail_at=1)
    assert visible_files(tmp_path) == []
    assert not partition_dir(tmp_path, "wf", "2024-01-01").exists()


def test_stale_staging_is_cleaned_and_live_one_kept(tmp_path):
    target = partition_dir(tmp_path, "wf", "2024-01-01")
    target.parent.mkdir(parents=True)
    stale = target.parent / f"{layout.STAGING_PREFIX}{target.name}-dead"
    stale.mkdir()
    (stale / "part-0000.parquet").write_bytes(b"partial")
    (stale / layout.LOCK_NAME).write_bytes(b"")  # its process died: nobody holds the lock
    live = StagedPartition(tmp_path, "wf", "2024-01-01")  # a landing in progress holds its lock
    try:
        assert not stale.exists()
        other = target.parent / f"{layout.STAGING_PREFIX}window_start=2024-01-02-dead"
        other.mkdir()
        clean_stale(target)
        assert live.staging.exists()  # locked: alive, kept
        assert other.exists()  # another partition's: not ours to clean
    finally:
        live.abort()
    assert not live.staging.exists()


def test_interrupted_two_rename_swap_is_repaired(tmp_path, monkeypatch):
    land_local(tmp_path, "2024-01-01", [b"id,name\n1,old\n"])
    target = partition_dir(tmp_path, "wf", "2024-01-01")
    # Simulate a crash between "old aside" and "new in" of the fallback swap.
    aside = target.parent / f"{layout.OLD_PREFIX}{target.name}-crash"
    os.rename(target, aside)
    assert not target.exists()
    with StagedPartition(tmp_path, "wf", "2024-01-01"):
        assert target.exists() and not aside.exists()  # restored before anything else
    assert pq.read_table(target).column("name").to_pylist() == ["old"]


def test_fallback_swap_without_renameat2(tmp_path, monkeypatch):
    monkeypatch.setattr(layout, "exchange_dirs", lambda a, b: False)
    land_local(tmp_path, "k", [b"id,name\n1,old\n"])
    land_local(tmp_path, "k", [b"id,name\n2,new\n"])
    root = tmp_path / "results" / "wf"
    assert [p.name for p in root.iterdir()] == ["window_start=k"]
    assert pq.read_table(root / "window_start=k").column("id").to_pylist() == [2]


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", ".hidden"])
def test_unsafe_names_refused(tmp_path, bad):
    with pytest.raises(ValueError):
        partition_dir(tmp_path, "wf", bad)
    with pytest.raises(ValueError):
        partition_dir(tmp_path, bad, "2024-01-01")


def test_schema_of_empty_partition(tmp_path):
    land_local(tmp_path, "e", [b"id,name\n"])
    table = pq.read_table(partition_dir(tmp_path, "wf", "e"))
    assert table.num_rows == 0 and table.schema.field("id").type == pa.int64()


def test_a_dead_landings_downloads_are_removed_by_the_next_landing(tmp_path):
    """kill -9 mid-download leaves <data dir>/tmp/landing-*; the next landing removes unlocked old ones."""
    import os
    import time

    from amc_pipeline.results import landing

    data_dir = tmp_path / "data"
    dead = data_dir / "tmp" / "landing-deadbeef0000"
    dead.mkdir(parents=True)
    (dead / "file-0000.download").write_bytes(b"x" * 1024)
    (dead / ".lock").touch()
    old = time.time() - 3600
    os.utime(dead, (old, old))
    alive_dir, alive_fd = landing._claim_tmp_dir(data_dir)
    try:
        assert not dead.exists()
        os.utime(alive_dir, (old, old))
        second_dir, second_fd = landing._claim_tmp_dir(data_dir)  # the live one is locked: kept
        os.close(second_fd)
        assert alive_dir.exists() and second_dir.exists()
    finally:
        os.close(alive_fd)
