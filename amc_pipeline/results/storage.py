"""Where results land (`storage.results_uri`): a local folder or an object store, and how a partition
is published there without a reader ever seeing a partial file or no file at all.

The results root is a local path, `file://`, `s3://bucket/prefix`, `gs://bucket/prefix` or
`abfs://container@account.dfs.core.windows.net/prefix` (`az://` is read as `abfs://`), resolved with
`pyarrow.fs.FileSystem.from_uri`. Credentials come from the environment only (AWS_* including
AWS_ENDPOINT_URL and AWS_REGION, GOOGLE_*, AZURE_*): pyarrow and boto3 read them; nothing here logs,
stores or raises them.

Layout under any root: `<root>/<workflow>/window_start=<key>/part-….parquet` (hive partitioning).

Publishing. A landing always converts to local disk first (fast, streamed, under `<data dir>/tmp`),
then:
- local root: `layout.StagedPartition` swaps a complete staging folder in (one atomic rename).
- object store (no rename, no atomic folder swap), `publish_to_object_store`:
  1. upload each part, streamed (multipart, bounded memory), to a staging prefix outside the
     workflow's dataset: `<root>/_staging/<workflow>/<key>-<token>/part-NNNN.parquet`; an object
     becomes visible only when its upload completes, so no partial object is ever listed;
  2. server-side copy each part to `<root>/<workflow>/window_start=<key>/part-<token>-NNNN.parquet`;
  3. delete every other object in that folder (the previous attempt's);
  4. delete the staging objects.
  A listing of the folder sees the old attempt, then old and new while steps 2-3 run (the *mixed
  window*, measured and reported as `Published.mixed_window_seconds`), then the new one only: never
  nothing, never a partial object. Files of one attempt share its token, so a reader can tell them
  apart. A landing that fails before step 2 leaves the old version untouched; one that fails in step
  2 removes the copies it made; one killed in steps 2-3 leaves old+new until the next landing of
  that window (the landing sensor retries it), which deletes everything but its own parts.
  Every landing of a workflow first removes `_staging/<workflow>/` objects older than
  `stale_seconds` and, on S3, aborts multipart uploads left open there by killed landings.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from amc_pipeline.amc.redact import redact_text, redact_url
from amc_pipeline.config import RESULTS_URI_ENV, Settings, StorageConfig, check_results_uri
from amc_pipeline.results.iceberg import IcebergSettings, commit_window, settings_for, table_schema
from amc_pipeline.results.layout import RESULTS_DIR, StagedPartition, part_name, partition_relpath, workflow_relpath

log = logging.getLogger(__name__)

#: Staging objects live here under the root, outside every workflow's dataset folder; a name no
#: workflow can take (workflow names start with a letter) and that readers skip ("_" prefix).
STAGING_DIR = "_staging"
#: Staging objects and open multipart uploads older than this are a dead landing's (a live one
#: uploads a part in seconds); a few minutes, so a landing of another window running now is safe.
STALE_STAGING_SECONDS = 300.0
#: Bytes read from the local part per write to the object store stream (pyarrow uploads in parts).
UPLOAD_CHUNK_BYTES = 8 * 1024 * 1024
#: Environment variables whose values are secrets: masked in every error text this module raises.
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AZURE_STORAGE_ACCOUNT_KEY",
              "AZURE_STORAGE_SAS_TOKEN", "AZURE_CLIENT_SECRET", "GOOGLE_OAUTH_ACCESS_TOKEN")
_SCHEME_ALIASES = {"gcs": "gs", "az": "abfs"}


class ResultStorageError(OSError):
    """The results storage refused or failed an operation; the text is free of credentials."""


def secret_values() -> list[str]:
    """The secret values currently in the environment (to mask them in error text)."""
    return [v for v in (os.environ.get(name) for name in SECRET_ENV) if v]


def safe_error(exc: BaseException) -> str:
    return redact_text(f"{type(exc).__name__}: {exc}", secret_values())


@dataclass(frozen=True)
class ResultsRoot:
    """A resolved results root: the filesystem and the root's path inside it, plus its URI."""

    uri: str  # canonical, without a trailing slash: s3://bucket/prefix, file:///abs/results
    filesystem: pafs.FileSystem = field(repr=False, compare=False)
    path: str  # the root inside `filesystem`: bucket/prefix, /abs/results

    @property
    def scheme(self) -> str:
        return urlsplit(self.uri).scheme

    @property
    def is_local(self) -> bool:
        return isinstance(self.filesystem, pafs.LocalFileSystem)

    @property
    def local_dir(self) -> Path:
        if not self.is_local:
            raise ValueError(f"{self.uri} is not a local folder")
        return Path(self.path)

    def join(self, relpath: str) -> str:
        return f"{self.path.rstrip('/')}/{relpath}" if self.path else relpath

    def uri_of(self, relpath: str) -> str:
        return f"{self.uri.rstrip('/')}/{relpath}"

    def workflow_path(self, workflow: str) -> str:
        return self.join(workflow_relpath(workflow))

    def workflow_uri(self, workflow: str) -> str:
        return self.uri_of(workflow_relpath(workflow)) + "/"

    def partition_path(self, workflow: str, partition_key: str) -> str:
        return self.join(partition_relpath(workflow, partition_key))

    def staging_path(self, workflow: str) -> str:
        """`<root>/_staging/<workflow>`: this workflow's staging prefix, outside its dataset."""
        return self.join(f"{STAGING_DIR}/{workflow_relpath(workflow)}")


def partition_uri(root: ResultsRoot, workflow: str, partition_key: str) -> str:
    """`<root URI>/<workflow>/window_start=<key>/`: what `dagster/uri` and the store record.

    For a local root this is the folder's `file://` URI (as before object stores existed).
    """
    if root.is_local:
        return (Path(root.path) / partition_relpath(workflow, partition_key)).resolve().as_uri()
    return root.uri_of(partition_relpath(workflow, partition_key)) + "/"


def effective_results_uri(storage: StorageConfig | None = None, settings: Settings | None = None) -> str:
    """`$AMC_PIPELINE_RESULTS_URI`, else the YAML's storage.results_uri, else `<data dir>/results`."""
    settings = settings or Settings.from_env()
    return settings.results_uri or (storage.results_uri if storage else None) or str(settings.data_dir / RESULTS_DIR)


def results_root(storage: StorageConfig | None = None, settings: Settings | None = None) -> ResultsRoot:
    """The results root this process lands into and reads from (see `effective_results_uri`)."""
    return resolve_results_root(effective_results_uri(storage, settings))


def iceberg_settings(storage: StorageConfig | None, database_url: str,
                     settings: Settings | None = None) -> IcebergSettings | None:
    """The Iceberg target when `storage.table_format` is iceberg (else None): the catalog in the
    store's database unless configured, data files under the effective results URI."""
    if storage is None or storage.table_format != "iceberg":
        return None
    return settings_for(storage, results_uri=effective_results_uri(storage, settings), database_url=database_url)


def resolve_results_root(uri: str | os.PathLike[str]) -> ResultsRoot:
    """Resolve a local path or URI to (filesystem, path); errors name the setting, never a credential."""
    text = os.fspath(uri)
    try:
        check_results_uri(text)
    except ValueError as exc:
        raise ValueError(f"storage.results_uri (or {RESULTS_URI_ENV}): {exc}") from None
    if "://" not in text or text.lower().startswith("file://"):
        local = Path(url2pathname(unquote(urlsplit(text).path))) if "://" in text else Path(text)
        local = local.expanduser().resolve()
        return ResultsRoot(uri=local.as_uri(), filesystem=pafs.LocalFileSystem(), path=str(local))
    filesystem, path = filesystem_for_uri(text)
    scheme = urlsplit(text).scheme.lower()
    canonical = f"{_SCHEME_ALIASES.get(scheme, scheme)}://{urlsplit(text).netloc}{urlsplit(text).path}".rstrip("/")
    return ResultsRoot(uri=canonical, filesystem=filesystem, path=path.rstrip("/"))


def filesystem_for_uri(uri: str) -> tuple[pafs.FileSystem, str]:
    """`pyarrow.fs.FileSystem.from_uri`, with file:// decoded like the landing encodes it, `az://` read
    as `abfs://`, S3's endpoint taken from AWS_ENDPOINT_URL when pyarrow does not, and errors redacted."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return pafs.LocalFileSystem(), url2pathname(unquote(parts.path))
    if scheme in _SCHEME_ALIASES:
        uri = _SCHEME_ALIASES[scheme] + uri[len(scheme):]
    try:
        filesystem, path = pafs.FileSystem.from_uri(uri)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid/OSError; re-raised without secrets
        raise ResultStorageError(f"cannot open results storage {redact_url(uri)}: {safe_error(exc)}") from None
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if isinstance(filesystem, pafs.S3FileSystem) and endpoint and not _endpoint_of(filesystem):
        # pyarrow versions that do not read AWS_ENDPOINT_URL: pass it explicitly (credentials stay
        # in pyarrow's default chain, read from the environment).
        ep = urlsplit(endpoint)
        filesystem = pafs.S3FileSystem(endpoint_override=ep.netloc or endpoint, scheme=ep.scheme or "https",
                                       region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
    return filesystem, path


def _endpoint_of(filesystem: pafs.S3FileSystem) -> str:
    try:
        return filesystem.__reduce__()[1][0].get("endpoint_override") or ""
    except Exception:  # noqa: BLE001 - an internal shape; absent means "not set"
        return ""


# --- publishing ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Published:
    """A partition as published: where, its parts, and how long readers could see two attempts."""

    uri: str
    path: str  # the partition folder inside the filesystem
    parts: list[str]  # final part paths (local paths, or bucket/key)
    bytes: int
    rows: int
    token: str = ""
    upload_seconds: float = 0.0
    #: First server-side copy to last delete of the previous attempt (0 for a local swap).
    mixed_window_seconds: float = 0.0
    #: The mixed window as wall-clock (time.time()) start and end, None for a local swap.
    mixed_window: tuple[float, float] | None = None
    #: Iceberg: the table (`<namespace>.<workflow>`), the commit's snapshot, and the table's columns
    #: just before the commit (what the schema check compares with; None for the first window).
    table_name: str | None = None
    snapshot_id: int | None = None
    previous_schema: pa.Schema | None = None


class LocalPublisher:
    """A local results root: today's StagedPartition, swapped in by one rename."""

    def __init__(self, root: ResultsRoot, data_dir: Path, workflow: str, partition_key: str) -> None:
        self.root = root
        self.staged = StagedPartition(data_dir, workflow, partition_key, results_dir=root.local_dir)
        self.target = self.staged.target

    def path_for(self, index: int) -> Path:
        return self.staged.path_for(index)

    def commit(self, logger: Any = log) -> Published:
        final = self.staged.commit()
        return Published(uri=self.target.resolve().as_uri(), path=str(self.target), parts=[str(p) for p in final],
                         bytes=sum(p.stat().st_size for p in final),
                         rows=sum(pq.read_metadata(str(p)).num_rows for p in final))

    def __enter__(self) -> LocalPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.staged.__exit__(*exc)


class ObjectStorePublisher:
    """An object-store root: parts converted into a local folder, then `publish_to_object_store`."""

    def __init__(self, root: ResultsRoot, local_dir: Path, workflow: str, partition_key: str, *,
                 stale_seconds: float = STALE_STAGING_SECONDS, logger: Any = log) -> None:
        self.root, self.workflow, self.partition_key = root, workflow, partition_key
        self.local_dir = local_dir
        self.local_dir.mkdir(parents=True, exist_ok=True)
        self.target = root.partition_path(workflow, partition_key)
        clean_staging(root, workflow, older_than_seconds=stale_seconds, logger=logger)

    def path_for(self, index: int) -> Path:
        return self.local_dir / part_name(index)

    def commit(self, logger: Any = log) -> Published:
        parts = sorted(p for p in self.local_dir.iterdir() if p.name.endswith(".parquet"))
        return publish_to_object_store(self.root, self.workflow, self.partition_key, parts, logger=logger)

    def __enter__(self) -> ObjectStorePublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        pass  # the local parts live in the landing's temporary folder, which the landing removes


#: Rows per batch handed to pyiceberg: its writer holds a batch (and its Parquet encoding) in memory,
#: so this bounds a landing's peak memory whatever the window's size.
ICEBERG_BATCH_ROWS = 200_000


class IcebergPublisher:
    """An Iceberg table: parts converted into a local folder, then one atomic commit of the window.

    The commit replaces exactly this window's rows (results/iceberg.py); data files go under the
    table's location in the warehouse (the results URI), so the same storage rules apply.
    """

    def __init__(self, settings: IcebergSettings, local_dir: Path, workflow: str, partition_key: str) -> None:
        self.settings, self.workflow, self.partition_key = settings, workflow, partition_key
        self.local_dir = local_dir
        self.local_dir.mkdir(parents=True, exist_ok=True)

    def path_for(self, index: int) -> Path:
        return self.local_dir / part_name(index)

    def commit(self, logger: Any = log) -> Published:
        parts = sorted(p for p in self.local_dir.iterdir() if p.name.endswith(".parquet"))
        previous = table_schema(self.settings, self.workflow)
        started = time.perf_counter()
        done = commit_window(self.settings, self.workflow, self.partition_key, parts, batch_rows=ICEBERG_BATCH_ROWS)
        _info(logger, f"committed {done.rows} rows of {self.workflow}/{self.partition_key} to Iceberg table "
                      f"{done.table_name} (snapshot {done.snapshot_id}, {time.perf_counter() - started:.2f}s)")
        return Published(uri=done.uri, path=done.uri, parts=[], bytes=sum(p.stat().st_size for p in parts),
                         rows=done.rows, token=str(done.snapshot_id),
                         upload_seconds=round(time.perf_counter() - started, 3), table_name=done.table_name,
                         snapshot_id=done.snapshot_id, previous_schema=previous)

    def __enter__(self) -> IcebergPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        pass  # the local parts live in the landing's temporary folder, which the landing removes


def publisher(root: ResultsRoot, *, data_dir: Path, local_dir: Path, workflow: str, partition_key: str,
              stale_seconds: float = STALE_STAGING_SECONDS, logger: Any = log,
              iceberg: IcebergSettings | None = None) -> LocalPublisher | ObjectStorePublisher | IcebergPublisher:
    """Where a landing writes its parts (`path_for`) and how it publishes them (`commit`)."""
    if iceberg is not None:
        return IcebergPublisher(iceberg, local_dir, workflow, partition_key)
    if root.is_local:
        return LocalPublisher(root, data_dir, workflow, partition_key)
    return ObjectStorePublisher(root, local_dir, workflow, partition_key, stale_seconds=stale_seconds,
                                logger=logger)


def publish_to_object_store(root: ResultsRoot, workflow: str, partition_key: str, local_parts: list[Path], *,
                            logger: Any = log, token: str | None = None) -> Published:
    """Upload to staging, copy into the partition folder, delete the previous attempt, then staging."""
    fs = root.filesystem
    token = token or uuid.uuid4().hex[:12]
    target = root.partition_path(workflow, partition_key)
    # The staging folder is one flat name: a fanned-out key's `|` becomes `@` (instance ids have none).
    staging = f"{root.staging_path(workflow)}/{partition_key.replace('|', '@')}-{token}"
    rows = sum(pq.read_metadata(str(p)).num_rows for p in local_parts)
    sizes = {p.name: p.stat().st_size for p in local_parts}
    started = time.perf_counter()
    staged: list[str] = []
    try:
        for part in local_parts:
            dest = f"{staging}/{part.name}"
            upload_file(fs, part, dest)
            staged.append(dest)
        _check_sizes(fs, {f"{staging}/{name}": size for name, size in sizes.items()})
    except BaseException as exc:
        _delete_quietly(fs, staged)
        if isinstance(exc, Exception):
            raise ResultStorageError(f"uploading {workflow}/{partition_key} to {root.uri}: {safe_error(exc)}") from None
        raise
    upload_seconds = time.perf_counter() - started

    final = [f"{target}/{final_part_name(token, i)}" for i in range(len(local_parts))]
    mixed_start = time.time()
    copied: list[str] = []
    try:
        for src, dest in zip(staged, final, strict=True):
            fs.copy_file(src, dest)
            copied.append(dest)
    except Exception as exc:
        _delete_quietly(fs, copied)  # back to the old version alone
        _delete_quietly(fs, staged)
        raise ResultStorageError(f"publishing {workflow}/{partition_key} to {root.uri}: {safe_error(exc)}") from None
    keep = set(final)
    try:
        for path in sorted(info.path for info in _list_files(fs, target)):
            if path not in keep:
                fs.delete_file(path)
    except Exception as exc:
        # The new version is complete; a reader may still see old parts beside it until the retry.
        raise ResultStorageError(f"deleting the previous version of {workflow}/{partition_key} in {root.uri}: "
                                 f"{safe_error(exc)}; the landing is retried") from None
    mixed_end = time.time()
    _delete_dir_quietly(fs, staging, staged)
    mixed = mixed_end - mixed_start
    _info(logger, f"published {len(final)} part(s) of {workflow}/{partition_key} to "
                  f"{partition_uri(root, workflow, partition_key)}; old and new parts were both listed for "
                  f"{mixed * 1000:.0f} ms (upload {upload_seconds:.2f}s)")
    return Published(uri=partition_uri(root, workflow, partition_key), path=target, parts=final,
                     bytes=sum(sizes.values()), rows=rows, token=token, upload_seconds=round(upload_seconds, 3),
                     mixed_window_seconds=round(mixed, 4), mixed_window=(mixed_start, mixed_end))


def final_part_name(token: str, index: int) -> str:
    """`part-<token>-NNNN.parquet`: the attempt's token keeps two attempts' parts apart in one folder."""
    return f"part-{token}-{index:04d}.parquet"


def upload_file(fs: pafs.FileSystem, source: Path, dest: str, *, chunk_bytes: int = UPLOAD_CHUNK_BYTES) -> None:
    """Stream a local file to `dest` (pyarrow uploads S3 multipart; memory stays a few parts)."""
    with open(source, "rb") as src, fs.open_output_stream(dest) as out:
        while chunk := src.read(chunk_bytes):
            out.write(chunk)


def _check_sizes(fs: pafs.FileSystem, expected: dict[str, int]) -> None:
    infos = fs.get_file_info(list(expected))
    for info in infos:
        if info.type != pafs.FileType.File or info.size != expected[info.path]:
            raise ResultStorageError(f"{info.path}: uploaded {info.size} bytes, expected {expected[info.path]}")


def _list_files(fs: pafs.FileSystem, folder: str) -> list[pafs.FileInfo]:
    try:
        infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True, recursive=True))
    except FileNotFoundError:
        return []
    return [i for i in infos if i.type == pafs.FileType.File]


def _delete_quietly(fs: pafs.FileSystem, paths: Iterable[str]) -> None:
    for path in paths:
        try:
            fs.delete_file(path)
        except Exception as exc:  # noqa: BLE001 - best effort; the next landing removes stale staging
            log.warning("could not delete %s: %s", path, safe_error(exc))


def _delete_dir_quietly(fs: pafs.FileSystem, path: str, files: Iterable[str]) -> None:
    """Delete a staging prefix in one request (a bulk delete on S3), else its files one by one."""
    try:
        fs.delete_dir(path)
    except Exception:  # noqa: BLE001 - best effort; the next landing removes stale staging
        _delete_quietly(fs, files)


# --- cleaning up after dead landings ---------------------------------------------------------------

@dataclass(frozen=True)
class Cleaned:
    objects: int = 0
    uploads_aborted: int = 0


def clean_staging(root: ResultsRoot, workflow: str, *, older_than_seconds: float = STALE_STAGING_SECONDS,
                  now: float | None = None, logger: Any = log) -> Cleaned:
    """Remove `_staging/<workflow>/` objects older than `older_than_seconds`; on S3 also abort the
    multipart uploads left open under it (a landing killed mid-upload leaves one; S3 keeps, and bills,
    its parts until it is aborted)."""
    fs = root.filesystem
    now = time.time() if now is None else now
    prefix = root.staging_path(workflow)
    removed = 0
    for info in _list_files(fs, prefix):
        modified = info.mtime.timestamp() if info.mtime is not None else 0.0
        if now - modified >= older_than_seconds:
            try:
                fs.delete_file(info.path)
                removed += 1
            except FileNotFoundError:
                pass
    aborted = abort_stale_uploads(root, prefix + "/", older_than_seconds=older_than_seconds, now=now)
    if removed or aborted:
        _info(logger, f"removed {removed} stale staging object(s) and aborted {aborted} open multipart "
                      f"upload(s) under {root.uri_of(prefix.removeprefix(root.path).lstrip('/'))}/")
    return Cleaned(removed, aborted)


def abort_stale_uploads(root: ResultsRoot, prefix: str, *, older_than_seconds: float = STALE_STAGING_SECONDS,
                        now: float | None = None) -> int:
    """Abort S3 multipart uploads under `prefix` (a bucket/key path) started `older_than_seconds` ago.

    boto3 reads the same AWS_* environment as pyarrow (AWS_ENDPOINT_URL included). Other stores:
    nothing to do (GCS and Azure drop uncommitted blocks themselves).
    """
    if root.scheme != "s3":
        return 0
    import boto3  # only S3 roots need it

    now = time.time() if now is None else now
    bucket, _, key_prefix = prefix.partition("/")
    client = boto3.client("s3")
    aborted = 0
    try:
        paginator = client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=bucket, Prefix=key_prefix):
            for upload in page.get("Uploads", []):
                initiated = upload.get("Initiated")
                age = now - initiated.timestamp() if isinstance(initiated, datetime) else older_than_seconds
                if age >= older_than_seconds:
                    client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                    aborted += 1
    except Exception as exc:  # noqa: BLE001 - cleanup must not fail a landing; said without secrets
        log.warning("could not abort stale multipart uploads under s3://%s: %s", prefix, safe_error(exc))
    return aborted


def _info(logger: Any, message: str) -> None:
    try:
        logger.info(message)
    except Exception:  # noqa: BLE001 - logging must never fail a landing
        log.info(message)
