"""Deterministic result files: same (workflow key, window) → same bytes, every time.

The values are deliberately awkward (commas, quotes, embedded newlines, non-ASCII text, empty fields
including in LONG columns) because real AMC results contain all of them.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import random
import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from amc_pipeline.simulator.config import Scenario

DEFAULT_COLUMNS: list[dict[str, str]] = [
    {"name": "advertiser", "dataType": "STRING", "columnType": "DIMENSION"},
    {"name": "campaign", "dataType": "STRING", "columnType": "DIMENSION"},
    {"name": "campaign_id", "dataType": "LONG", "columnType": "DIMENSION"},
    {"name": "date", "dataType": "DATE", "columnType": "DIMENSION"},
    {"name": "first_impression_time", "dataType": "TIMESTAMP", "columnType": "DIMENSION"},
    {"name": "impressions", "dataType": "LONG", "columnType": "METRIC"},
    {"name": "spend", "dataType": "DOUBLE", "columnType": "METRIC"},
    {"name": "reach", "dataType": "LONG", "columnType": "METRIC"},
]

#: Cycled through so every result with a dozen rows or more contains each awkward case.
TRICKY_STRINGS = [
    "Acme, Inc.",
    'The "Best" Brand',
    "Line one\nline two",
    "Café Zürich – 東京 ✓",
    "",
    "Plain Brand",
    'Mixed, "quoted"\r\nand multi-line',
    "Ünïcödé Ωmega",
    "simple",
    "Brand; with semicolon",
    "trailing space ",
    "Ελληνικά",
]


def normalize_columns(columns: list[Any] | None) -> list[dict[str, str]]:
    """Columns as AMC's outputColumns; accepts dicts, (name, type) pairs or bare names."""
    if not columns:
        return [dict(c) for c in DEFAULT_COLUMNS]
    out = []
    for col in columns:
        if isinstance(col, dict):
            data_type = str(col.get("dataType") or col.get("data_type") or "STRING").upper()
            out.append(
                {
                    "name": str(col["name"]),
                    "dataType": data_type,
                    "columnType": str(
                        col.get("columnType")
                        or col.get("column_type")
                        or ("METRIC" if data_type in ("LONG", "DOUBLE") else "DIMENSION")
                    ),
                }
            )
        elif isinstance(col, list | tuple):
            name, data_type = col[0], str(col[1]).upper()
            column_type = col[2] if len(col) > 2 else ("METRIC" if data_type in ("LONG", "DOUBLE") else "DIMENSION")
            out.append({"name": str(name), "dataType": data_type, "columnType": str(column_type)})
        else:
            out.append({"name": str(col), "dataType": "STRING", "columnType": "DIMENSION"})
    return out


def columns_from_csv(path: Path) -> list[dict[str, str]]:
    """Columns for a served-as-is file: names from its header, all STRING."""
    with open(path, encoding="utf-8", newline="") as fh:
        header = next(csv.reader(fh), [])
    return [{"name": h, "dataType": "STRING", "columnType": "DIMENSION"} for h in header]


def _seed(key: str, window_start: str, window_end: str) -> int:
    digest = hashlib.sha256(f"{key}|{window_start}|{window_end}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def plan(key: str, window_start: str, window_end: str, rows: int | None, files: int | None) -> tuple[int, int]:
    """(rows, files) for one execution: defaults are deterministic from key and window."""
    rng = random.Random(_seed(key, window_start, window_end))
    n_rows = rng.randint(20, 300) if rows is None else rows
    n_files = rng.randint(1, 5) if files is None else files
    if n_rows == 0:
        n_files = 1
    n_files = max(1, min(n_files, 5, max(n_rows, 1)))
    return n_rows, n_files


def _window_start(window_start: str) -> datetime:
    try:
        return datetime.fromisoformat(window_start.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return datetime(2024, 1, 1, tzinfo=UTC)


def _wall_time(text: str | None) -> datetime | None:
    """A window's local wall time as AMC echoes it (`timeWindowStartOriginal`, no offset), or None."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text[:19]).replace(tzinfo=UTC)  # a wall time: no zone arithmetic
    except ValueError:
        return None


def _value(data_type: str, i: int, col_index: int, rng: random.Random, start: datetime, days: int) -> str:
    if data_type == "STRING":
        return TRICKY_STRINGS[(i + col_index * 5) % len(TRICKY_STRINGS)]
    if data_type in ("LONG", "INTEGER", "INT", "BIGINT"):
        if (i + col_index) % 13 == 7:
            return ""  # a null in a LONG column
        return str(rng.randint(0, 5_000_000) if col_index % 2 else rng.randint(1, 10**12))
    if data_type in ("DOUBLE", "DECIMAL", "FLOAT"):
        if (i + col_index) % 17 == 11:
            return ""
        return repr(round(rng.uniform(0, 100_000), 4))
    if data_type == "DATE":
        return (start + timedelta(days=i % days)).strftime("%Y-%m-%d")
    if data_type == "TIMESTAMP":
        moment = start + timedelta(days=i % days, seconds=rng.randint(0, 86399), milliseconds=rng.randint(0, 999))
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
    if data_type == "BOOLEAN":
        return "true" if i % 2 else "false"
    return f"value {i}"


def generate(
    directory: Path,
    *,
    key: str,
    window_start: str,
    window_end: str,
    columns: list[dict[str, str]],
    rows: int | None,
    files: int | None,
    local_start: str | None = None,
    local_end: str | None = None,
) -> list[Path]:
    """Write the result CSVs (UTF-8, header in every file, header only for zero rows) into `directory`.

    DATE and TIMESTAMP values follow the window the execution was given, spread over its days: in the
    window's own time zone when `local_start`/`local_end` (AMC's `timeWindow*Original`) are given, as
    AMC reports dates in the execution's time zone; else in UTC. A packed execution's rows therefore
    split back into its windows by such a column.
    """
    directory.mkdir(parents=True, exist_ok=True)
    n_rows, n_files = plan(key, window_start, window_end, rows, files)
    rng = random.Random(_seed(key, window_start, window_end) ^ 0x5EED)
    start = _wall_time(local_start) or _window_start(window_start)
    end = _wall_time(local_end) or _window_start(window_end)
    days = max(1, (end - start).days)
    names = [c["name"] for c in columns]
    types = [c["dataType"].upper() for c in columns]
    per_file = [n_rows // n_files + (1 if k < n_rows % n_files else 0) for k in range(n_files)]
    paths = []
    i = 0
    for k, count in enumerate(per_file):
        path = directory / f"part-{k:04d}.csv"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(names)
            batch = []
            for _ in range(count):
                batch.append([_value(t, i, c, rng, start, days) for c, t in enumerate(types)])
                i += 1
                if len(batch) >= 5000:
                    writer.writerows(batch)
                    batch.clear()
            writer.writerows(batch)
        tmp.replace(path)
        paths.append(path)
    return paths


def copy_given(directory: Path, sources: list[str | Path]) -> list[Path]:
    """Serve the given files as-is (hard link when possible, so a 1 GB file costs no copy)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, src in enumerate(sources):
        src_path = Path(src)
        dest = directory / f"part-{k:04d}{src_path.suffix or '.csv'}"
        if not dest.exists():
            try:
                dest.hardlink_to(src_path)
            except OSError:
                shutil.copyfile(src_path, dest)
        paths.append(dest)
    return paths


def metadata_document(execution_id: str, columns: list[dict[str, str]], path: Path) -> bytes:
    """The small JSON a metadataDownloadUrl answers with."""
    return json.dumps(
        {
            "workflowExecutionId": execution_id,
            "fileName": path.name,
            "columns": columns,
            "bytes": path.stat().st_size,
        },
        ensure_ascii=False,
    ).encode()


class ResultFiles:
    """A mixin of `SimulatorState`: each execution's result files, generated once per server, and the
    signatures of their pre-signed URLs."""

    def result_files(self, execution_id: str) -> list[Path]:
        """Generate once (per server) and return the execution's result files on disk."""
        record = self.get_record(execution_id)
        if record is None:
            raise KeyError(execution_id)
        with self.lock:
            if execution_id in self._files:
                return self._files[execution_id]
            lock = self._file_locks.setdefault(execution_id, threading.Lock())
        with lock:
            with self.lock:
                if execution_id in self._files:
                    return self._files[execution_id]
            scenario = Scenario.from_dict(record["scenario"])
            directory = self.results_dir / execution_id
            if scenario.result_files:
                paths = copy_given(directory, list(scenario.result_files))
            else:
                public = record["public"]
                paths = generate(
                    directory,
                    key=record["key"],
                    window_start=public.get("timeWindowStart") or "",
                    window_end=public.get("timeWindowEnd") or "",
                    local_start=public.get("timeWindowStartOriginal"),
                    local_end=public.get("timeWindowEndOriginal"),
                    columns=record["columns"],
                    rows=scenario.rows,
                    files=scenario.files,
                )
            with self.lock:
                self._files[execution_id] = paths
            return paths

    def sign(self, path: str, amz_date: str, expires: str) -> str:
        return hmac.new(self.signing_key, f"{path}\n{amz_date}\n{expires}".encode(), hashlib.sha256).hexdigest()
