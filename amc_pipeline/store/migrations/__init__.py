"""Alembic migrations of the execution store, run programmatically by `ExecutionStore` (no alembic.ini).

Why a package: the scripts ship inside the installed wheel, so `ExecutionStore(url)` can bring any
database to head wherever the code location runs.
"""
