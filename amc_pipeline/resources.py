"""Dagster resources of the project: the execution store (the AMC client resource lives in amc/)."""

import threading

import dagster as dg

from amc_pipeline.store.store import ExecutionStore

_STORES: dict[str, ExecutionStore] = {}
_STORES_LOCK = threading.Lock()


def store_for(url: str) -> ExecutionStore:
    """One ExecutionStore (engine, migrated schema) per URL and process.

    Why cached: sensors evaluate every 15 s in the same code-server process; re-creating an engine and
    re-running migrations per tick would cost more than the tick's own query.
    """
    with _STORES_LOCK:
        store = _STORES.get(url)
        if store is None:
            store = ExecutionStore(url)
            _STORES[url] = store
        return store


class StoreResource(dg.ConfigurableResource):
    """The execution store: SQLite under the data dir by default, PostgreSQL by URL in production."""

    database_url: str

    def get_store(self) -> ExecutionStore:
        return store_for(self.database_url)
