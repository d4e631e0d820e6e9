"""Where landed results live, and how a partition is replaced without readers ever seeing half of it.

Layout: `<data_dir>/results/<workflow>/window_start=<partition key>/part-NNNN.parquet`, one part per
result file, readable with hive partitioning by pyarrow, pandas, DuckDB and Spark. A workflow fanned
out over instances nests the window under its instance,
`<workflow>/instance_id=<instance>/window_start=<window>/`, so one dataset holds every advertiser and
a reader gets `instance_id` as a column.

Why staging + swap: a landing writes several files; if it dies halfway (a bad file, a killed run, a
full disk) a reader must still see the previous complete version, never a mix. Parts are written
into a hidden staging directory beside the target (same filesystem, so renames are atomic),
fsynced with their directory, and the whole directory is swapped in. On Linux the swap is one
`renameat2(RENAME_EXCHANGE)`; elsewhere it is two renames (old aside, new in), and a crash between
them is repaired at the next landing of that partition.

Staging and set-aside directories start with "." so that pyarrow/pandas datasets ignore them, and
they sit one level beside the partitions so `results/<workflow>/*/*.parquet` globs do not reach
their files. Each staging directory holds an flock while its landing is alive; one whose lock can
be taken is stale (its process is gone) and is removed by the next landing of that partition.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import logging
import os
import shutil
import uuid
from pathlib import Path

from amc_pipeline.partition_keys import split_key

log = logging.getLogger(__name__)

RESULTS_DIR = "results"
PARTITION_COLUMN = "window_start"
INSTANCE_COLUMN = "instance_id"
STAGING_PREFIX = ".staging-"
OLD_PREFIX = ".old-"
LOCK_NAME = ".landing.lock"


def _check_component(value: str, what: str) -> str:
    if not value or value in (".", "..") or "/" in value or "\\" in value or "\x00" in value:
        raise ValueError(f"{what} {value!r} cannot be a path component")
    if value.startswith("."):
        raise ValueError(f"{what} {value!r} must not start with '.'")
    return value


def workflow_dir(data_dir: str | os.PathLike[str], workflow: str) -> Path:
    """`<data_dir>/results/<workflow>`: the hive dataset root of one workflow."""
    return Path(data_dir) / RESULTS_DIR / _check_component(workflow, "workflow")


def partition_dir(data_dir: str | os.PathLike[str], workflow: str, partition_key: str) -> Path:
    """`<data_dir>/results/<workflow>/window_start=<partition key>`."""
    return partition_folder(workflow, partition_key, Path(data_dir) / RESULTS_DIR)


def partition_folder(workflow: str, partition_key: str, results_dir: str | os.PathLike[str]) -> Path:
    """`<results_dir>/<workflow>/window_start=<partition key>` (results_dir: a local results root)."""
    return Path(results_dir) / partition_relpath(workflow, partition_key)


def _hive_components(partition_key: str) -> list[str]:
    """`[window_start=<window>]`, or `[instance_id=<instance>, window_start=<window>]` for a
    fanned-out key (`<window>|<instance>`)."""
    window_key, instance_id = split_key(str(partition_key))
    window = f"{PARTITION_COLUMN}={_check_component(window_key, 'partition key')}"
    if instance_id is None:
        return [window]
    return [f"{INSTANCE_COLUMN}={_check_component(instance_id, 'instance id')}", window]


def workflow_relpath(workflow: str) -> str:
    """`<workflow>`, checked: the dataset folder of a workflow under any results root."""
    return _check_component(workflow, "workflow")


def partition_relpath(workflow: str, partition_key: str) -> str:
    """`<workflow>/window_start=<partition key>` (or `<workflow>/instance_id=<i>/window_start=<w>`):
    where a partition sits under any results root."""
    return "/".join([_check_component(workflow, "workflow"), *_hive_components(partition_key)])


def part_name(index: int) -> str:
    """`part-NNNN.parquet`, numbered by the result file's position in downloadUrls."""
    return f"part-{index:04d}.parquet"


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file or a directory (directories need it too, or a rename may not survive a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- atomic directory exchange (Linux renameat2) ---------------------------------------------

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_renameat2 = None
try:  # glibc >= 2.28
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    _renameat2 = getattr(_libc, "renameat2", None)
    if _renameat2 is not None:
        _renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        _renameat2.restype = ctypes.c_int
except OSError:  # pragma: no cover - not Linux/glibc
    _renameat2 = None


def exchange_dirs(a: Path, b: Path) -> bool:
    """Atomically swap two paths; False when the OS/filesystem cannot (then use two renames)."""
    if _renameat2 is None:
        return False
    res = _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if res == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


# --- staging --------------------------------------------------------------------------------

def hold_lock(lock_path: Path, *, mode: int = 0o644) -> int:
    """Create `lock_path` and take its flock; the returned descriptor holds it until closed.

    Why a lock and not a pid file: the kernel releases an flock when its process dies (kill -9, OOM),
    so `is_locked` tells a live landing's directory from one a dead process left behind.
    """
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, mode)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def is_locked(lock_path: Path) -> bool:
    """True while a live process holds the flock on `lock_path` (see hold_lock)."""
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock we may have taken
    return False


def clean_stale(target: Path) -> list[Path]:
    """Remove dead staging/set-aside directories of one partition; restore a lost previous version.

    A set-aside `.old-…` directory with no partition in place means a two-rename swap died between
    its renames: the old version is put back before anything is deleted.
    """
    parent = target.parent
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    staging_prefix = f"{STAGING_PREFIX}{target.name}-"
    old_prefix = f"{OLD_PREFIX}{target.name}-"
    olds = sorted((p for p in parent.iterdir() if p.name.startswith(old_prefix)),
                  key=lambda p: p.stat().st_mtime, reverse=True)
    if olds and not target.exists():
        log.warning("restoring %s from an interrupted swap", target)
        os.rename(olds[0], target)
        fsync_path(parent)
        olds = olds[1:]
    for path in olds:
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    for path in parent.iterdir():
        if path.name.startswith(staging_prefix) and not is_locked(path / LOCK_NAME):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        log.info("cleaned %d stale staging dirs for %s", len(removed), target)
    return removed


class StagedPartition:
    """A partition being written: parts go to a hidden staging dir until `commit()` swaps it in.

    Use as a context manager: leaving the block without `commit()` (an exception) removes the
    staging directory and leaves the previous version untouched.
    """

    def __init__(self, data_dir: str | os.PathLike[str], workflow: str, partition_key: str, *,
                 results_dir: str | os.PathLike[str] | None = None) -> None:
        # results_dir: a local results root other than <data_dir>/results (storage.results_uri).
        self.target = (partition_dir(data_dir, workflow, partition_key) if results_dir is None
                       else partition_folder(workflow, partition_key, results_dir))
        self.parent = self.target.parent
        self.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(self.target)
        self.staging = self.parent / f"{STAGING_PREFIX}{self.target.name}-{uuid.uuid4().hex[:12]}"
        self.staging.mkdir()
        self._lock_fd: int | None = hold_lock(self.staging / LOCK_NAME)
        self.committed = False

    def path_for(self, index: int) -> Path:
        """Where part `index` is written while staged."""
        return self.staging / part_name(index)

    def staged_parts(self) -> list[Path]:
        return sorted(p for p in self.staging.iterdir() if p.name.endswith(".parquet"))

    def commit(self) -> list[Path]:
        """fsync the parts and the staging dir, swap it into place, delete the old version.

        Returns the final paths of the parts.
        """
        if self.committed:
            raise RuntimeError("partition already committed")
        parts = self.staged_parts()
        for part in parts:
            fsync_path(part)
        fsync_path(self.staging)
        # The flock is held through the swap so a concurrent landing never takes this for stale.
        if self.target.exists():
            if exchange_dirs(self.staging, self.target):
                # The old version now sits at the staging path.
                fsync_path(self.parent)
                shutil.rmtree(self.staging, ignore_errors=True)
            else:
                aside = self.parent / f"{OLD_PREFIX}{self.target.name}-{uuid.uuid4().hex[:12]}"
                os.rename(self.target, aside)
                os.rename(self.staging, self.target)
                fsync_path(self.parent)
                shutil.rmtree(aside, ignore_errors=True)
        else:
            os.rename(self.staging, self.target)
            fsync_path(self.parent)
        self.committed = True
        self._unlock(lock_path=self.target / LOCK_NAME)
        fsync_path(self.target)
        return [self.target / p.name for p in parts]

    def _unlock(self, *, lock_path: Path | None) -> None:
        if self._lock_fd is not None:
            if lock_path is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(lock_path)
            os.close(self._lock_fd)
            self._lock_fd = None

    def abort(self) -> None:
        """Drop everything staged; the visible partition is untouched."""
        if self.committed:
            return
        self._unlock(lock_path=None)
        shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self) -> StagedPartition:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.committed:
            self.abort()
