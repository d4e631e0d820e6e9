"""execution_body (the create body AMC accepts), small helpers, and the Dagster resource."""

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import dagster as dg
import httpx
import pytest

from amc_pipeline.amc.accounts import AccountClients
from amc_pipeline.amc.client import (
    AmcClient,
    AsyncAmcClient,
    RetryPolicy,
    execution_body,
    make_timeout,
    parse_retry_after,
)
from amc_pipeline.defs.resources import AmcResource

START, END = datetime(2024, 3, 1), datetime(2024, 3, 2)


def test_ad_hoc_body():
    body = execution_body(
        workflow_id="daily_reach-abc",
        sql="SELECT 1",
        window_start=START,
        window_end=END,
        time_zone="America/New_York",
        timeout_seconds=3600,
        parameter_values={"campaigns": ["ALL"]},
        ignore_data_gaps=True,
    )
    assert body == {
        "workflow": {"workflowId": "daily_reach-abc", "sqlQuery": "SELECT 1"},
        "timeWindowType": "EXPLICIT",
        "timeWindowStart": "2024-03-01T00:00:00",
        "timeWindowEnd": "2024-03-02T00:00:00",
        "timeWindowTimeZone": "America/New_York",
        "workflowExecutionTimeoutSeconds": 3600,
        "parameterValues": {"campaigns": ["ALL"]},
        "ignoreDataGaps": True,
    }


def test_saved_workflow_body_and_timeout_clamping():
    low = execution_body(workflow_id="saved", window_start=START, window_end=END, time_zone="UTC", timeout_seconds=60)
    high = execution_body(
        workflow_id="saved", window_start=START, window_end=END, time_zone="UTC", timeout_seconds=10**7
    )
    assert low["workflowId"] == "saved" and "workflow" not in low
    assert low["workflowExecutionTimeoutSeconds"] == 900 and high["workflowExecutionTimeoutSeconds"] == 86400
    assert low["parameterValues"] == {} and low["ignoreDataGaps"] is False


def test_aware_bounds_become_wall_time_in_the_window_zone_without_z():
    body = execution_body(
        workflow_id="w",
        window_start=datetime(2024, 3, 1, 5, tzinfo=UTC),
        window_end=datetime(2024, 3, 2, 5, tzinfo=UTC),
        time_zone="America/New_York",
        timeout_seconds=900,
    )
    assert body["timeWindowStart"] == "2024-03-01T00:00:00"
    assert body["timeWindowEnd"] == "2024-03-02T00:00:00"
    assert not body["timeWindowStart"].endswith("Z") and "+" not in body["timeWindowStart"]


def test_bad_windows_are_refused():
    with pytest.raises(ValueError, match="not after"):
        execution_body(workflow_id="w", window_start=END, window_end=START, time_zone="UTC", timeout_seconds=900)
    with pytest.raises(ValueError, match="workflow_id"):
        execution_body(workflow_id="", window_start=START, window_end=END, time_zone="UTC", timeout_seconds=900)


def test_retry_after_parsing():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    assert 100 < parse_retry_after(later) <= 120
    assert parse_retry_after(format_datetime(datetime(2000, 1, 1, tzinfo=UTC), usegmt=True)) == 0.0


def test_retry_policy_and_timeouts_are_explicit():
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
    timeout = make_timeout(30)
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (10.0, 30, 30, 30)
    assert make_timeout(httpx.Timeout(5.0)) == httpx.Timeout(5.0)


def test_resource_builds_working_clients(sim, instance, monkeypatch):
    monkeypatch.setenv("AMC_TEST_CLIENT_ID", sim.config.client_id)
    monkeypatch.setenv("AMC_TEST_CLIENT_SECRET", sim.config.client_secret)
    monkeypatch.setenv("AMC_TEST_REFRESH_TOKEN", sim.config.refresh_token)

    @dg.asset
    def probe(amc: AmcResource) -> int:
        with amc.get_client() as client:
            # Routed by account: the instance (no `account`) goes to the default account's client.
            assert isinstance(client, AccountClients) and isinstance(client.for_instance(instance), AmcClient)
            page, _ = client.list_executions_page(instance, min_creation_time=datetime.now(UTC) - timedelta(hours=1))

        async def poll() -> int:
            async with amc.get_async_client(concurrency=3) as aclient:
                routed = aclient.for_instance(instance)
                assert isinstance(routed, AsyncAmcClient) and routed.concurrency == 3
                page2, _ = await aclient.list_executions_page(instance, workflow_id="nothing-here")
                return len(page) + len(page2)

        return asyncio.run(poll())

    resource = AmcResource(
        api_url=sim.url,
        token_url=sim.token_url,
        client_id=dg.EnvVar("AMC_TEST_CLIENT_ID"),
        client_secret=dg.EnvVar("AMC_TEST_CLIENT_SECRET"),
        refresh_token=dg.EnvVar("AMC_TEST_REFRESH_TOKEN"),
        timeout_seconds=5,
        retry_budget_seconds=10,
    )
    result = dg.materialize([probe], resources={"amc": resource})
    assert result.success and result.output_for_node("probe") == 0
    assert sim.stats()["list"] == 2
    assert sim.config.client_secret not in repr(resource)
