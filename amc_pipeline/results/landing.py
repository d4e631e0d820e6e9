"""Land one SUCCEEDED execution: download every file, convert to typed Parquet, swap the partition in.

This is what the engine calls to land a window (docs/architecture.md, "The flow"). Why the shape:
- Downloads go to a temporary directory under `data_dir` (same disk as the results, cleaned up
  whatever happens), so a failure never leaves CSVs behind.
- Each file is converted as soon as it is on disk, on a small thread pool (pyarrow releases the
  GIL), so conversion overlaps the next download and two files convert at once on two cores.
- Parts are written into a staging directory and published only when all of them are complete: a
  local results root swaps the directory in (layout.StagedPartition), an object store gets them
  uploaded, copied into place and the previous attempt deleted (results/storage.py). A failure
  leaves the previous version of the partition intact.
- The row count reported is checked against the Parquet footers actually written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from amc_pipeline.results.convert import convert_file
from amc_pipeline.results.convert_csv import DEFAULT_BLOCK_SIZE
from amc_pipeline.results.convert_parquet import (
    DEFAULT_COMPRESSION,
    DEFAULT_ROW_GROUP_ROWS,
    PREVIEW_ROWS,
    ConversionResult,
    write_empty,
)
from amc_pipeline.results.convert_schema import ResultConversionError, schema_for
from amc_pipeline.results.download import DownloadedFile, iter_results
from amc_pipeline.results.iceberg import IcebergSettings
from amc_pipeline.results.layout import RESULTS_DIR, hold_lock, is_locked
from amc_pipeline.results.storage import STALE_STAGING_SECONDS, ResultsRoot, publisher, resolve_results_root

log = logging.getLogger(__name__)

#: Two files at once: the machine has two cores and pyarrow's CSV parse + Parquet encode is CPU-bound.
DEFAULT_CONVERT_WORKERS = 2


@dataclass(frozen=True)
class LandingResult:
    """What a landing produced; the asset turns it into MaterializeResult metadata."""

    rows: int
    bytes: int
    uri: str
    files: int
    download_seconds: float
    schema: pa.Schema
    preview: list[dict[str, Any]]
    parquet_files: list[str]
    path: str = ""
    convert_seconds: float = 0.0
    total_seconds: float = 0.0
    downloaded_bytes: int = 0
    content_types: list[str] = field(default_factory=list)
    #: Object stores: how long a listing of the partition showed both the previous and the new
    #: attempt's parts (first copy to last delete); 0 for a local swap, which is atomic.
    mixed_window_seconds: float = 0.0
    #: That window as time.time() start and end; None for a local swap.
    mixed_window: tuple[float, float] | None = None
    upload_seconds: float = 0.0
    #: Iceberg landings: the table, the commit's snapshot, the table's columns before the commit.
    table_name: str | None = None
    snapshot_id: int | None = None
    previous_schema: pa.Schema | None = None


def land_execution(
    client: Any,
    instance: Any,
    amc_execution_id: str,
    output_columns: Any,
    *,
    data_dir: str | os.PathLike[str],
    workflow: str,
    partition_key: str,
    api_url: str | None = None,
    convert_workers: int = DEFAULT_CONVERT_WORKERS,
    block_size: int = DEFAULT_BLOCK_SIZE,
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
    compression: str = DEFAULT_COMPRESSION,
    max_attempts: int | None = None,
    preview_rows: int = PREVIEW_ROWS,
    logger: logging.Logger | Any | None = None,
    downloader_options: dict[str, Any] | None = None,
    on_file: Callable[[DownloadedFile], None] | None = None,
    results: ResultsRoot | str | os.PathLike[str] | None = None,
    stale_staging_seconds: float = STALE_STAGING_SECONDS,
    iceberg: IcebergSettings | None = None,
) -> LandingResult:
    """Download, convert and atomically publish one execution's results as one partition.

    `output_columns` is AMC's outputColumns (AmcExecution.output_columns or the raw dicts); it types
    the Parquet. `api_url` defaults to the client's; download URLs must be on it or on S3.
    Raises ResultDownloadError / ResultFormatError / UnsafeDownloadUrlError (download) or
    ResultConversionError (conversion); the partition then keeps its previous version.
    `on_file` is called with each file as soon as it is on disk (progress logging).
    `results` is the results root (results/storage.py: a ResultsRoot, a local path or a URI such as
    s3://bucket/prefix); default `<data_dir>/results`. Downloads and conversion always use
    `<data_dir>/tmp`. `iceberg`: commit the window to that Iceberg table instead (one atomic
    snapshot; the parts never become a hive folder). `stale_staging_seconds`: staging objects and
    open multipart uploads of this workflow older than this are a dead landing's and are removed
    first (object stores only).
    """
    logger = logger or log
    started = time.perf_counter()
    data_dir = Path(data_dir)
    root = results if isinstance(results, ResultsRoot) else resolve_results_root(
        results if results is not None else data_dir / RESULTS_DIR)
    tmp_dir, tmp_lock = _claim_tmp_dir(data_dir)
    options = dict(downloader_options or {})
    if max_attempts is not None:
        options["max_attempts"] = max_attempts
    convert_kwargs = dict(block_size=block_size, row_group_rows=row_group_rows, compression=compression,
                          preview_rows=preview_rows)

    def convert(downloaded: DownloadedFile, dest: Path) -> ConversionResult:
        try:
            return convert_file(downloaded.path, dest, output_columns, kind=downloaded.kind,
                                file_index=downloaded.index, **convert_kwargs)
        finally:
            downloaded.path.unlink(missing_ok=True)  # the CSV is not needed once converted (or failed)

    downloaded_files: list[DownloadedFile] = []
    try:
        with (
            publisher(root, data_dir=data_dir, local_dir=tmp_dir / "parts", workflow=workflow,
                      partition_key=partition_key, stale_seconds=stale_staging_seconds, logger=logger,
                      iceberg=iceberg) as staged,
            iter_results(client, instance, amc_execution_id, tmp_dir, api_url=api_url,
                         **options) as downloader,
            ThreadPoolExecutor(max_workers=max(1, convert_workers), thread_name_prefix="amc-convert") as pool,
        ):
            futures: list[Future[ConversionResult]] = []
            try:
                for downloaded in downloader:
                    downloaded_files.append(downloaded)
                    _info(logger, f"downloaded result file {downloaded.index + 1}/{downloader.file_count()}: "
                                  f"{downloaded.bytes} bytes, {downloaded.kind}")
                    if on_file is not None:
                        on_file(downloaded)
                    futures.append(pool.submit(convert, downloaded, staged.path_for(downloaded.index)))
                    _raise_first_failure(futures)
                download_seconds = downloader.seconds
                wait(futures, return_when=FIRST_EXCEPTION)
                _raise_first_failure(futures)
                results = [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                wait(futures)
                raise
            convert_done = time.perf_counter()

            if not results:
                # AMC gave no file at all: land the declared schema with no rows, so readers and the
                # schema-drift check still see the columns.
                write_empty(staged.path_for(0), schema_for(output_columns), compression)
            schema = _common_schema(results, output_columns)
            published = staged.commit(logger)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        os.close(tmp_lock)
        _remove_if_empty(data_dir / "tmp")

    rows = published.rows  # from the Parquet footers written
    expected_rows = sum(r.rows for r in results)
    if rows != expected_rows:  # pragma: no cover - a writer bug, not an input problem
        raise RuntimeError(f"landed {rows} rows but converted {expected_rows}")
    preview: list[dict[str, Any]] = []
    for r in results:
        if len(preview) >= preview_rows:
            break
        preview.extend(r.preview[: preview_rows - len(preview)])
    total = time.perf_counter() - started
    result = LandingResult(
        rows=rows,
        bytes=published.bytes,
        uri=published.uri,
        files=len(downloaded_files),
        download_seconds=round(download_seconds, 3),
        schema=schema,
        preview=preview,
        parquet_files=published.parts,
        path=published.path,
        convert_seconds=round(convert_done - started - download_seconds, 3),
        total_seconds=round(total, 3),
        downloaded_bytes=sum(f.bytes for f in downloaded_files),
        content_types=[f.content_type for f in downloaded_files],
        mixed_window_seconds=published.mixed_window_seconds,
        mixed_window=published.mixed_window,
        upload_seconds=published.upload_seconds,
        table_name=published.table_name,
        snapshot_id=published.snapshot_id,
        previous_schema=published.previous_schema,
    )
    _info(logger, f"landed {result.rows} rows from {result.files} file(s) of execution {amc_execution_id} "
                  f"into {result.uri} ({result.bytes} Parquet bytes, {total:.1f}s"
                  + (f"; old and new parts both listed for {result.mixed_window_seconds * 1000:.0f} ms)"
                     if result.mixed_window is not None else ")"))
    return result


#: A landing folder left by a dead process is removed once it is this old and nobody holds its lock.
STALE_TMP_SECONDS = 60.0


def _claim_tmp_dir(data_dir: Path) -> tuple[Path, int]:
    """A private download folder under <data dir>/tmp, locked while this landing lives.

    A landing killed mid-download (kill -9, OOM) cannot clean up after itself; its partial downloads
    would stay forever. Each landing holds an flock on its folder, and every new landing removes the
    folders whose lock nobody holds (older than a minute, so one being created right now is safe).
    """
    root = data_dir / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for other in root.glob("landing-*"):
        try:
            stale = now - other.stat().st_mtime > STALE_TMP_SECONDS and not is_locked(other / ".lock")
        except FileNotFoundError:
            continue
        if stale:
            shutil.rmtree(other, ignore_errors=True)
    tmp_dir = root / f"landing-{uuid.uuid4().hex[:12]}"
    tmp_dir.mkdir()
    return tmp_dir, hold_lock(tmp_dir / ".lock", mode=0o600)


def _raise_first_failure(futures: list[Future[ConversionResult]]) -> None:
    for f in futures:
        if f.done() and not f.cancelled() and f.exception() is not None:
            raise f.exception()  # type: ignore[misc]


def _common_schema(results: list[ConversionResult], output_columns: Any) -> pa.Schema:
    """All parts of a partition must share one schema, or hive readers fail or drop columns."""
    if not results:
        return schema_for(output_columns)
    first = results[0].schema
    for r in results[1:]:
        if not r.schema.equals(first):
            raise ResultConversionError(
                f"schema differs from result file 0: {r.schema.names} vs {first.names} "
                f"({[str(t) for t in r.schema.types]} vs {[str(t) for t in first.types]})",
                file_index=results.index(r))
    return first


def _remove_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()


def _info(logger: Any, message: str) -> None:
    try:
        logger.info(message)
    except Exception:  # noqa: BLE001 - logging must never fail a landing
        log.info(message)
