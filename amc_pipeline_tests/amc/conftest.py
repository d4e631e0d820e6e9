"""Fixtures for the AMC client tests: the project's simulator on 127.0.0.1 as the only peer.

Every server is started by a context manager inside a fixture, so it stops even when a test fails.
Retry waits are tiny so fault tests finish quickly; nothing asserts wall-clock time.
"""

import pytest
import stamina.instrumentation

from amc_pipeline.amc.auth import AmcCredentials
from amc_pipeline.amc.client import AmcClient, RetryPolicy
from amc_pipeline.config import InstanceConfig
from amc_pipeline.simulator import SimulatorConfig, SimulatorServer
from amc_pipeline_tests import constants

INSTANCE = InstanceConfig(**constants.INSTANCE)
FAST_RETRY = RetryPolicy(attempts=5, wait_initial=0.01, wait_max=0.05, budget_seconds=20.0, wait_jitter=0.01)


def sim_config(**overrides) -> SimulatorConfig:
    """Fast lifecycle (sub-second) and a roomy quota unless a test says otherwise."""
    values = {**constants.FAST_LIFECYCLE, "daily_quota": 1000}
    values.update(overrides)
    return SimulatorConfig(**values)


def credentials_for(sim: SimulatorServer, **overrides) -> AmcCredentials:
    cfg = sim.config
    values = {
        "client_id": cfg.client_id,
        "client_secret": cfg.client_secret,
        "refresh_token": cfg.refresh_token,
        "token_url": sim.token_url,
    }
    values.update(overrides)
    return AmcCredentials(**values)


@pytest.fixture
def sim_overrides() -> dict:
    """Override in a test module (or parametrize indirectly) to change the simulator config."""
    return {}


@pytest.fixture
def sim(sim_overrides):
    with SimulatorServer(sim_config(**sim_overrides)) as server:
        yield server


@pytest.fixture
def client(sim):
    with AmcClient(sim.url, credentials_for(sim), timeout=5.0, retry=FAST_RETRY) as amc:
        yield amc


@pytest.fixture
def instance():
    return INSTANCE


@pytest.fixture
def retries():
    """Every retry stamina schedules: (retry number, seconds it waits, the error that caused it)."""
    seen: list[tuple[int, float, BaseException]] = []
    previous = stamina.instrumentation.get_on_retry_hooks()

    def hook(details) -> None:
        seen.append((details.retry_num, details.wait_for, details.caused_by))

    stamina.instrumentation.set_on_retry_hooks([*previous, hook])
    try:
        yield seen
    finally:
        stamina.instrumentation.set_on_retry_hooks(previous)
