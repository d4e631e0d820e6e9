"""Land one window of a workflow's results in an Iceberg table, as one atomic commit.

Why Iceberg and why this shape:

- **Atomic replace.** A window is re-landed when AMC is re-run (a forced re-run, a retry). Readers
  (DuckDB, Spark, pyiceberg) must see either the previous attempt's rows or the new attempt's rows,
  never both and never neither. Iceberg gives that with one snapshot: we build a single
  OVERWRITE snapshot that removes the window's old data files and adds the new ones, stage it (and
  any schema change) in one `Transaction`, and the catalog swaps the table's metadata pointer in
  one compare-and-set (for the SQL catalog, one `UPDATE … WHERE metadata_location = <old>` in the
  store's database). Until that swap nothing is visible; after it, everything is. A failure before
  the swap leaves the table exactly as it was (the data files we wrote are deleted best effort;
  they were never referenced). Concurrent commits to *other* windows are retried by pyiceberg with
  conflict validation scoped to this window's filter; a concurrent commit to the *same* window
  fails this one instead of mixing (the landing lease makes that impossible in practice).
- **Identity partition on the window key.** The table is partitioned by `identity(window_start)`,
  a string column holding the partition key (e.g. "2026-10-05"). One window is then one
  partition, so the replace is a pure file-level operation: the old window's files are dropped
  whole (no rows are rewritten, no delete files), and the Dagster partition key, the Hive-style
  layout of the Parquet lake and the Iceberg partition all say the same thing.
- **Bounded memory.** Parts are read with `ParquetFile.iter_batches(batch_rows)`; each batch is
  aligned to the table schema, written as its own data file(s) and dropped before the next one is
  read. Peak memory is about one batch (plus pyarrow's write buffers), independent of the window's
  size; only the small `DataFile` descriptors accumulate until the commit. pyiceberg's streaming
  `append(RecordBatchReader)` is not used because it refuses partitioned tables (pyiceberg 0.12),
  and one `append` per chunk would make one snapshot per chunk.
- **Schema evolution.** AMC adds columns over time. A column the table lacks is added (union by
  name) in the same transaction as the data; a column the new data lacks is written as nulls; a
  column Iceberg can widen (int -> long, float -> double, decimal precision) is widened; anything
  else raises `IcebergSchemaError` naming the column and both types, before anything is written.
- **Secrets.** S3 credentials come from the standard AWS environment and go only into the
  catalog's FileIO properties; `IcebergSettings`' repr masks secret-looking properties and the
  catalog URL's password, and error text that would quote a credential is redacted.

Layering: no Dagster here (see docs/architecture.md, `results/`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchTableError,
    ResolveError,
    TableAlreadyExistsError,
    ValidationException,
)
from pyiceberg.expressions import EqualTo
from pyiceberg.io.pyarrow import _dataframe_to_data_files
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema, assign_fresh_schema_ids, promote
from pyiceberg.table import Table
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import IcebergType, PrimitiveType
from sqlalchemy.engine import make_url

from amc_pipeline.amc.redact import REDACTED, redact_text

log = logging.getLogger(__name__)

#: Catalog property names (case-insensitive substrings) whose values are secrets.
_SECRET_MARKERS = ("secret", "password", "token", "credential", "access-key", "access_key", "session")


@dataclass(frozen=True)
class IcebergSettings:
    """Where the Iceberg tables live.

    `catalog_uri` is the SQLAlchemy URL of the SQL catalog (the execution store's database);
    `warehouse` is where data and metadata files go (a local path, file://… or s3://bucket/prefix).
    `properties` are extra catalog / FileIO properties (e.g. `s3.endpoint`), passed as they are.
    """

    catalog_uri: str
    warehouse: str
    namespace: str = "amc"
    catalog_name: str = "amc_pipeline"
    catalog_type: str = "sql"
    properties: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        props = {k: (REDACTED if _is_secret_key(k) else v) for k, v in sorted(self.properties.items())}
        return (
            f"IcebergSettings(catalog_uri={_safe_url(self.catalog_uri)!r}, warehouse={self.warehouse!r}, "
            f"namespace={self.namespace!r}, catalog_name={self.catalog_name!r}, "
            f"catalog_type={self.catalog_type!r}, properties={props!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True)
class IcebergCommit:
    """What one `commit_window` did."""

    table_name: str  # "<namespace>.<workflow>"
    snapshot_id: int
    rows: int  # rows of this window now in the table
    uri: str  # the table's location
    schema: pa.Schema  # the table's Arrow schema after the commit


class IcebergSchemaError(ValueError):
    """The new data cannot be written into the table's schema (a retype Iceberg cannot promote)."""


class IcebergLandingError(RuntimeError):
    """A failure whose original text quoted a credential (the original is dropped, not chained)."""


# --- secrets ------------------------------------------------------------------------------------


def _is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(marker in lowered for marker in _SECRET_MARKERS)


def _safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a SQLAlchemy URL (rest/glue): show it without user info
        return redact_text(url.split("@", 1)[-1]) if "@" in url else url


def _secrets_of(settings: IcebergSettings, props: dict[str, str]) -> list[str]:
    secrets = [v for k, v in props.items() if _is_secret_key(k) and v]
    try:
        password = make_url(settings.catalog_uri).password
    except Exception:  # noqa: BLE001
        password = None
    if password:
        secrets.append(str(password))
    return secrets


def _redacted(exc: BaseException, secrets: Sequence[str]) -> IcebergLandingError | None:
    """A safe replacement for `exc` when its text quotes a secret, else None (re-raise as is)."""
    text = f"{type(exc).__name__}: {exc}"
    if any(s and len(s) >= 4 and s in text for s in secrets):
        return IcebergLandingError(redact_text(text, secrets))
    return None


# --- catalog ------------------------------------------------------------------------------------

_CATALOGS: dict[tuple[Any, ...], Catalog] = {}
_CATALOGS_LOCK = threading.Lock()


def _s3_env_properties() -> dict[str, str]:
    """S3 FileIO properties from the standard AWS environment (only those that are set)."""
    env = os.environ
    mapping = {
        "s3.endpoint": env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL"),
        "s3.region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
        "s3.access-key-id": env.get("AWS_ACCESS_KEY_ID"),
        "s3.secret-access-key": env.get("AWS_SECRET_ACCESS_KEY"),
        "s3.session-token": env.get("AWS_SESSION_TOKEN"),
    }
    return {k: v for k, v in mapping.items() if v}


def _normalize_warehouse(warehouse: str) -> str:
    if "://" in warehouse:
        return warehouse.rstrip("/")
    return str(Path(warehouse).expanduser().resolve())


def _catalog_properties(settings: IcebergSettings) -> dict[str, str]:
    props: dict[str, str] = {"type": settings.catalog_type, "warehouse": _normalize_warehouse(settings.warehouse)}
    if settings.catalog_uri:
        props["uri"] = settings.catalog_uri
    if settings.warehouse.startswith(("s3://", "s3a://")):
        props.update(_s3_env_properties())
    props.update(settings.properties)  # explicit settings win over the environment
    return props


def load_catalog_for(settings: IcebergSettings) -> Catalog:
    """The pyiceberg catalog of `settings`, one per settings (and S3 environment) per process."""
    props = _catalog_properties(settings)
    key = (settings.catalog_name, tuple(sorted(props.items())))
    with _CATALOGS_LOCK:
        catalog = _CATALOGS.get(key)
        if catalog is not None:
            return catalog
        try:
            catalog = load_catalog(settings.catalog_name, **props)
        except Exception as exc:
            safe = _redacted(exc, _secrets_of(settings, props))
            if safe is not None:
                raise safe from None
            raise
        _CATALOGS[key] = catalog
        return catalog


# --- schema -------------------------------------------------------------------------------------


def _to_iceberg(schema: pa.Schema) -> Schema:
    """An Arrow schema as an Iceberg schema with fresh field ids (all fields optional)."""
    nullable = pa.schema([f.with_nullable(True) for f in schema])
    return assign_fresh_schema_ids(Catalog._convert_schema_if_needed(nullable))


def _read_part_schema(parts: Sequence[Path]) -> pa.Schema:
    """The union of the parts' schemas, by name, first type wins unless a later part widens it."""
    fields: dict[str, pa.Field] = {}
    for path in parts:
        for f in pq.read_schema(path):
            known = fields.get(f.name)
            if known is None:
                fields[f.name] = f
            elif not known.type.equals(f.type):
                fields[f.name] = _widest(f.name, known, f, where=f"part {path.name}")
    return pa.schema(list(fields.values()))


def _widest(name: str, a: pa.Field, b: pa.Field, *, where: str) -> pa.Field:
    ta = _to_iceberg(pa.schema([a])).fields[0].field_type
    tb = _to_iceberg(pa.schema([b])).fields[0].field_type
    if ta == tb:
        return a
    if _promotable(ta, tb):
        return b
    if _promotable(tb, ta):
        return a
    raise IcebergSchemaError(f"column {name!r}: parts disagree on its type ({ta} vs {tb} in {where})")


def _promotable(file_type: IcebergType, read_type: IcebergType) -> bool:
    if not (isinstance(file_type, PrimitiveType) and isinstance(read_type, PrimitiveType)):
        return False
    try:
        promote(file_type, read_type)
        return True
    except ResolveError:
        return False


def _evolution(table: Table, data: pa.Schema, table_name: str) -> pa.Schema | None:
    """The Arrow fields to union into the table (new or widened columns), or None when none.

    Raises IcebergSchemaError for a column whose new type Iceberg can neither keep (by casting the
    data to the table's type) nor promote the table to.
    """
    current = table.schema()
    data_iceberg = _to_iceberg(data)
    changes: list[pa.Field] = []
    for f in data:
        new_type = data_iceberg.find_field(f.name).field_type
        try:
            existing = current.find_field(f.name)
        except ValueError:
            changes.append(f.with_nullable(True))
            continue
        old_type = existing.field_type
        if old_type == new_type or _promotable(new_type, old_type):
            continue  # same, or the data is narrower: cast on write
        if _promotable(old_type, new_type):
            changes.append(f.with_nullable(True))  # widen the table
            continue
        raise IcebergSchemaError(
            f"column {f.name!r} of {table_name}: the table has type {old_type}, the new data has {new_type}; "
            f"Iceberg cannot promote {old_type} to {new_type}"
        )
    return pa.schema(changes) if changes else None


def _align(batch: pa.RecordBatch, target: pa.Schema, window_column: str, key: str) -> pa.Table:
    """`batch` with exactly the table's columns: cast, nulls for the missing, the window key added."""
    arrays: list[pa.Array] = []
    n = batch.num_rows
    names = set(batch.schema.names)
    for f in target:
        if f.name == window_column:
            arrays.append(pa.array([key] * n, type=f.type))
        elif f.name in names:
            col = batch.column(f.name)
            arrays.append(col if col.type.equals(f.type) else col.cast(f.type))
        else:
            arrays.append(pa.nulls(n, type=f.type))
    return pa.Table.from_arrays(arrays, schema=target)


# --- table --------------------------------------------------------------------------------------


def _ensure_table(catalog: Catalog, namespace: str, name: str, data: pa.Schema, window_column: str) -> Table:
    identifier = f"{namespace}.{name}"
    try:
        return catalog.load_table(identifier)
    except NoSuchTableError:
        pass
    with contextlib.suppress(NamespaceAlreadyExistsError):
        catalog.create_namespace(namespace)
    schema = _to_iceberg(data.append(pa.field(window_column, pa.string(), nullable=True)))
    source = schema.find_field(window_column)
    spec = PartitionSpec(
        PartitionField(source_id=source.field_id, field_id=1000, transform=IdentityTransform(), name=window_column)
    )
    try:
        table = catalog.create_table(identifier, schema=schema, partition_spec=spec)
        log.info("created Iceberg table %s at %s", identifier, table.location())
        return table
    except TableAlreadyExistsError:  # another landing created it first
        return catalog.load_table(identifier)


def _window_partition_position(table: Table, spec_id: int, window_column: str) -> int | None:
    source_id = table.schema().find_field(window_column).field_id
    for pos, pf in enumerate(table.metadata.specs()[spec_id].fields):
        if pf.source_id == source_id and isinstance(pf.transform, IdentityTransform):
            return pos
    return None


def _iter_batches(parts: Sequence[Path], batch_rows: int) -> Iterator[pa.RecordBatch]:
    for path in parts:
        pf = pq.ParquetFile(path)
        try:
            yield from pf.iter_batches(batch_size=batch_rows)
        finally:
            pf.close()


def commit_window(
    settings: IcebergSettings,
    workflow: str,
    partition_key: str,
    parts: list[str | Path],
    *,
    window_column: str = "window_start",
    batch_rows: int = 1_000_000,
    snapshot_properties: dict[str, str] | None = None,
) -> IcebergCommit:
    """Replace the rows of window `partition_key` in table `<namespace>.<workflow>` with `parts`.

    One Iceberg snapshot, one catalog commit: readers see the old rows or the new, never both or
    neither. `parts` are local Parquet files without `window_column`; an empty part (or no parts)
    leaves the window empty (still one commit). On any failure the table is unchanged.
    `snapshot_properties` are added to the snapshot summary (with `amc.workflow`, `amc.window`).
    """
    if batch_rows <= 0:
        raise ValueError(f"batch_rows must be positive, got {batch_rows}")
    paths = [Path(p) for p in parts]
    catalog = load_catalog_for(settings)
    props = _catalog_properties(settings)
    secrets = _secrets_of(settings, props)
    table_name = f"{settings.namespace}.{workflow}"
    try:
        return _commit_window(
            catalog, table_name, settings.namespace, workflow, partition_key, paths,
            window_column=window_column, batch_rows=batch_rows,
            snapshot_properties={
                **(snapshot_properties or {}), "amc.workflow": workflow, "amc.window": partition_key,
            },
        )  # fmt: skip
    except Exception as exc:
        safe = _redacted(exc, secrets)
        if safe is not None:
            raise safe from None
        raise


def _commit_window(
    catalog: Catalog,
    table_name: str,
    namespace: str,
    workflow: str,
    key: str,
    paths: list[Path],
    *,
    window_column: str,
    batch_rows: int,
    snapshot_properties: dict[str, str],
) -> IcebergCommit:
    data_schema = _read_part_schema(paths)
    if window_column in data_schema.names:
        raise IcebergSchemaError(f"the parts already have a column {window_column!r}; it is added by the landing")
    table = _ensure_table(catalog, namespace, workflow, data_schema, window_column)
    if _window_partition_position(table, table.spec().spec_id, window_column) is None:
        raise IcebergSchemaError(
            f"{table_name} is not partitioned by identity({window_column}): cannot replace a window"
        )

    tx = table.transaction()
    evolve = _evolution(table, data_schema, table_name)
    if evolve is not None:
        with tx.update_schema() as update:
            update.union_by_name(evolve)
        log.info("%s: schema evolves with %s", table_name, ", ".join(f"{f.name}: {f.type}" for f in evolve))

    written: list[str] = []
    committed = False
    try:
        rows = 0
        with tx.update_snapshot(snapshot_properties=snapshot_properties).overwrite() as producer:
            # The conflict filter for pyiceberg's retry validation, and what the overwrite replaces.
            producer.delete_by_predicate(EqualTo(window_column, key))
            for task in table.scan(row_filter=EqualTo(window_column, key)).plan_files():
                data_file = task.file
                pos = _window_partition_position(table, data_file.spec_id, window_column)
                if pos is None or data_file.partition[pos] != key:
                    raise IcebergSchemaError(
                        f"{table_name}: data file {data_file.file_path} is not wholly in window {key!r} "
                        f"(partition spec {data_file.spec_id}); refusing a replace that would drop other rows"
                    )
                producer.delete_data_file(data_file)

            metadata = tx.table_metadata  # includes the staged schema change
            target = metadata.schema().as_arrow()
            counter = itertools.count(0)
            for batch in _iter_batches(paths, batch_rows):
                if batch.num_rows == 0:
                    continue
                chunk = _align(batch, target, window_column, key)
                del batch
                for data_file in _dataframe_to_data_files(
                    table_metadata=metadata, df=chunk, io=table.io, write_uuid=producer.commit_uuid, counter=counter
                ):
                    written.append(data_file.file_path)
                    rows += data_file.record_count
                    producer.append_data_file(data_file)
                del chunk
            snapshot_id = producer.snapshot_id
        try:
            table = tx.commit_transaction()
            committed = True
        except (CommitFailedException, ValidationException):
            committed = False  # pyiceberg guarantees it did not land
            raise
        except Exception:
            committed = True  # unknown outcome: keep the files, they may be referenced now
            raise
    finally:
        if not committed:
            _delete_quietly(table, written)

    current = table.current_snapshot()
    if current is None or current.snapshot_id != snapshot_id:
        # Someone committed on top of us between our swap and our refresh: still ours, by id.
        found = table.metadata.snapshot_by_id(snapshot_id)
        if found is None:  # pragma: no cover - pyiceberg returned without landing our snapshot
            raise RuntimeError(f"{table_name}: snapshot {snapshot_id} is not in the table after the commit")
    log.info("%s: window %s replaced, %d rows, snapshot %d", table_name, key, rows, snapshot_id)
    return IcebergCommit(
        table_name=table_name,
        snapshot_id=snapshot_id,
        rows=rows,
        uri=table.location(),
        schema=table.schema().as_arrow(),
    )


def _delete_quietly(table: Table, paths: list[str]) -> None:
    """Best-effort removal of data files no snapshot references (a failed or refused commit)."""
    for path in paths:
        try:
            table.io.delete(path)
        except Exception:  # noqa: BLE001 - leftovers are orphans, not corruption
            log.warning("could not delete orphan data file %s", path)


def table_schema(settings: IcebergSettings, workflow: str, *, window_column: str = "window_start") -> pa.Schema | None:
    """The table's columns before a commit (without the window column), or None before the first."""
    catalog = load_catalog_for(settings)
    try:
        table = catalog.load_table(f"{settings.namespace}.{workflow}")
    except NoSuchTableError:
        return None
    schema = table.schema().as_arrow()
    return pa.schema([f for f in schema if f.name != window_column])


def settings_for(storage: Any, *, results_uri: str, database_url: str) -> IcebergSettings:
    """The Iceberg settings of a `StorageConfig`: by default the SQL catalog in the store's database,
    data files under the results URI. REST and Glue catalogs take their `uri` and properties."""
    catalog = storage.iceberg.catalog
    return IcebergSettings(
        catalog_uri=catalog.uri or database_url,
        warehouse=results_uri,
        namespace=storage.iceberg.namespace,
        catalog_type=catalog.type,
        properties=dict(catalog.properties),
    )
