"""Alembic environment for programmatic use: the caller passes an open connection in a transaction.

Why no URL here: `amc_pipeline.store.engine.upgrade_database` opens the connection, takes the PostgreSQL
advisory lock (so two processes starting at once on a fresh database do not race) and commits.
"""

from alembic import context

from amc_pipeline.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "the amc_pipeline store migrations run programmatically: use "
        "amc_pipeline.store.engine.upgrade_database(engine) (config.attributes['connection'] is unset)"
    )

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
