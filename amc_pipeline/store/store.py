"""The execution store: every execution and attempt, and the only code that changes their status.

Why it is built this way (docs/architecture.md, "The lifecycle"): several monitor runs, sensors and
asset runs may touch the same execution at once, possibly on different hosts. There are no in-process
locks: every status write is a compare-and-set in one UPDATE (`... WHERE id = ? AND status = ?`,
`status_writes.set_status`), duplicates are refused by unique indexes, and each method is one short
database transaction.

The code lives by concern next to this module: `engine` (connecting, SQLite settings, migrations),
`rows` (shared query pieces), `status_writes` (the status CAS), `executions`, `due`, `landing`,
`heartbeats`, `notifications` and `reports`. This module only assembles them, and keeps the names
callers have always imported from here.
"""

from amc_pipeline.store.due import DueCheck, DueWork
from amc_pipeline.store.engine import (
    MIGRATION_LOCK_KEY,
    MIGRATIONS_DIR,
    SQLITE_BUSY_TIMEOUT_MS,
    alembic_config,
    current_revision,
    head_revision,
    make_engine,
    normalize_url,
    upgrade_database,
)
from amc_pipeline.store.executions import Executions
from amc_pipeline.store.heartbeats import Heartbeats
from amc_pipeline.store.landing import Landing
from amc_pipeline.store.notifications import Notifications
from amc_pipeline.store.packs import Packs
from amc_pipeline.store.records import Enqueued, Superseded
from amc_pipeline.store.reports import Reports
from amc_pipeline.store.rows import ExecutionNotFound

__all__ = [
    "MIGRATIONS_DIR",
    "MIGRATION_LOCK_KEY",
    "SQLITE_BUSY_TIMEOUT_MS",
    "DueCheck",
    "Enqueued",
    "ExecutionNotFound",
    "ExecutionStore",
    "Superseded",
    "alembic_config",
    "current_revision",
    "head_revision",
    "make_engine",
    "normalize_url",
    "upgrade_database",
]


class ExecutionStore(Executions, DueWork, Landing, Heartbeats, Notifications, Reports, Packs):
    """All reads and writes of executions and attempts. Safe to share between threads and processes.

    `ExecutionStore(url, upgrade=True, **engine_kwargs)` opens the database (see `StoreEngine`);
    the methods come from one mixin per concern: `Executions` (enqueue, enqueue_forced, get*, transition,
    update_attempt, new_attempt), `DueWork` (the monitor's due queries, begin_submit, record_check(s)),
    `Landing`, `Heartbeats`, `Notifications` (what each notification target was sent), `Reports` and
    `Packs` (which windows ride on one AMC execution, docs/packing.md).

    Why mixins and not composition: callers (monitor, sensors, assets, health, tests) use some 45 methods
    on one object. Composition would either make every caller reach into parts (`store.due.x`) or need
    a forwarding method per public method here, a second copy of every signature to keep in sync. The
    mixins hold no state of their own (only the `StoreEngine` base has `__init__`, owning the engine),
    depend on each other only through the shared helpers in `rows` and `status_writes`, and define
    disjoint public names (a test checks this), so the method resolution order never decides anything.
    """
