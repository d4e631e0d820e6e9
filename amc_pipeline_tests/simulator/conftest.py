"""Fixtures: a running simulator on a free port and an `Api` (amc_pipeline_tests/simulator/api.py) for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from amc_pipeline.simulator import SimulatorConfig, SimulatorServer
from amc_pipeline_tests.constants import FAST_LIFECYCLE
from amc_pipeline_tests.simulator.api import Api


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(SimulatorConfig(**FAST_LIFECYCLE, seed=7)) as server:
        yield server


@pytest.fixture
def api(sim: SimulatorServer) -> Iterator[Api]:
    client = Api(sim)
    try:
        yield client
    finally:
        client.close()
