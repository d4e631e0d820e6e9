# The two commands a new user needs: `make demo` and `make test`. Both create .venv and install
# the project (with its pinned Dagster family) first, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# dg expects the project's venv to be the active one; say so instead of sourcing activate.
DG := VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/dg

.PHONY: install demo test lint defs bench clean

$(BIN)/amc-pipeline: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/amc-pipeline

demo: install
	$(BIN)/amc-pipeline demo $(if $(HEADLESS),--headless,)

test: install
	$(BIN)/ruff check .
	$(DG) check defs
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .

defs: install
	$(DG) list defs
	$(DG) check defs

bench: install
	$(BIN)/python benchmarks/poll_scale.py
	$(BIN)/python benchmarks/landing.py
	$(BIN)/python benchmarks/monitor_day.py
	$(BIN)/python benchmarks/many_instances.py
	$(BIN)/python benchmarks/backfill.py

clean:
	rm -rf .dagster_home .pytest_cache .ruff_cache
