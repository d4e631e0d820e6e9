"""One `ExecutionStore` per database URL and process, shared by sensors, runs and the CLI."""

import threading

from amc_pipeline.store.store import ExecutionStore

_STORES: dict[str, ExecutionStore] = {}
_STORES_LOCK = threading.Lock()


def store_for(url: str) -> ExecutionStore:
    """The process's store for `url` (engine, migrated schema), created on first use.

    Why cached: sensors evaluate every 15 s in the same code-server process; re-creating an engine and
    re-running migrations per tick would cost more than the tick's own query.
    """
    with _STORES_LOCK:
        store = _STORES.get(url)
        if store is None:
            store = ExecutionStore(url)
            _STORES[url] = store
        return store
