"""Real PostgreSQL for tests: a uniquely named database per use, always dropped afterwards.

Why real PostgreSQL and not only SQLite: locking, partial unique indexes and concurrent transactions
behave differently; the store's race-safety must be proven on the production backend.
Server: env AMC_TEST_PG_ADMIN_URL (default postgresql+psycopg2://postgres@127.0.0.1:5432/postgres).
When env CI == "true", an unreachable server fails the test instead of skipping it.
"""

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

ADMIN_URL = os.environ.get("AMC_TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def _admin_engine() -> Engine:
    return create_engine(
        ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args={"connect_timeout": 5}
    )


def unreachable_reason() -> str | None:
    """None when the server answers; otherwise why not (for skip/fail messages)."""
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable here"
        safe = make_url(ADMIN_URL).render_as_string(hide_password=True)
        return f"PostgreSQL at {safe} unreachable: {type(exc).__name__}: {str(exc).splitlines()[0]}"
    finally:
        engine.dispose()


def require_postgres() -> None:
    """Skip the calling test when PostgreSQL is unreachable, or fail it when CI == "true"."""
    import pytest

    reason = unreachable_reason()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests must not skip)", pytrace=False)
    pytest.skip(reason)


def _drop(engine: Engine, name: str) -> None:
    with engine.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"
            ),
            {"n": name},
        )
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def temp_database(prefix: str = "amc_test") -> Iterator[str]:
    """Create a fresh database, yield its SQLAlchemy URL, drop it afterwards (even on failure)."""
    safe_prefix = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in prefix.lower())[:30]
    name = f"{safe_prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
        finally:
            _drop(engine, name)
    finally:
        engine.dispose()
