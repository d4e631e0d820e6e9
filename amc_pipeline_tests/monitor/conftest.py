import pytest


@pytest.fixture
def db_url(tmp_path) -> str:
    """A fresh SQLite execution store per test (the store's own tests cover PostgreSQL too)."""
    return f"sqlite:///{tmp_path / 'store.db'}"
