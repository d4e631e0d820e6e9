"""Every fault kind, seen from a plain httpx client over real HTTP."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from amc_pipeline.simulator import Fault, SimulatorConfig, SimulatorServer
from amc_pipeline_tests.constants import ADVERTISER_ID, CLIENT_ID, FAST_LIFECYCLE, INSTANCE_ID, MARKETPLACE_ID

from .api import Api, get_token


def test_throttle_times_then_recovers(api: Api) -> None:
    api.sim.add_fault(Fault(kind="throttle", endpoint="list", times=2, retry_after=3))
    for _ in range(2):
        response = api.list(workflowId="x")
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "3"
        assert response.json()["code"] == "429"
    assert api.list(workflowId="x").status_code == 200
    assert api.sim.stats()["list"] == 3


def test_error500_and_timeout504(api: Api) -> None:
    api.sim.add_fault(Fault(kind="error500", endpoint="get", times=1))
    api.sim.add_fault(Fault(kind="timeout504", endpoint="create", times=1))
    response = api.get("whatever")
    assert response.status_code == 500 and response.json()["code"] == "500"
    response = api.create()
    assert response.status_code == 504
    assert response.json() == {"message": "Endpoint request timed out"}
    assert api.sim.executions() == []  # a gateway timeout before the service created nothing


def test_fault_endpoint_matching(api: Api) -> None:
    api.sim.add_fault(Fault(kind="error500", endpoint="create"))
    assert api.list(workflowId="x").status_code == 200
    assert api.create().status_code == 500
    assert api.create().status_code == 500
    api.sim.clear_faults()
    assert api.create().status_code == 200


def test_probability_is_seedable() -> None:
    def pattern() -> list[int]:
        with SimulatorServer(SimulatorConfig(**FAST_LIFECYCLE, seed=42)) as sim:
            api = Api(sim)
            try:
                sim.add_fault(Fault(kind="error500", endpoint="list", probability=0.5))
                return [api.list(workflowId="x").status_code for _ in range(20)]
            finally:
                api.close()

    first = pattern()
    assert first == pattern()
    assert 200 in first and 500 in first


def test_slow_delays(api: Api) -> None:
    api.sim.add_fault(Fault(kind="slow", endpoint="get", times=1, delay_seconds=1.0))
    with pytest.raises(httpx.ReadTimeout):
        api.client.get("/workflowExecutions/x", headers=api.headers(), timeout=0.2)
    assert api.get("x").status_code == 404


def test_drop_closes_connection_without_answer(api: Api) -> None:
    api.sim.add_fault(Fault(kind="drop", endpoint="list", times=1))
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        api.list(workflowId="x")
    assert api.list(workflowId="x").status_code == 200


def test_lost_create_response_still_creates(api: Api) -> None:
    api.sim.add_fault(Fault(kind="lost_create_response", times=1))
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        api.create(workflow_id="lost-1")
    listed = api.list(workflowId="lost-1").json()["executions"]
    assert len(listed) == 1 and listed[0]["status"] == "PENDING"
    assert api.create(workflow_id="lost-1").status_code == 200


def test_truncate_download(api: Api) -> None:
    execution_id = api.succeeded()
    url = api.urls(execution_id).json()["downloadUrls"][0]
    api.sim.add_fault(Fault(kind="truncate_download", times=1))
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.get(url)
    assert httpx.get(url).content == api.sim.served_files(execution_id)[0]


def test_expire_url_fault(api: Api) -> None:
    execution_id = api.succeeded()
    url = api.urls(execution_id).json()["downloadUrls"][0]
    api.sim.add_fault(Fault(kind="expire_url", times=1))
    response = httpx.get(url)
    assert response.status_code == 403 and "Request has expired" in response.text
    assert httpx.get(url).status_code == 200


def test_revoke_token_fault(api: Api) -> None:
    api.sim.add_fault(Fault(kind="revoke_token", endpoint="list", times=1))
    assert api.list(workflowId="x").status_code == 401
    assert api.list(workflowId="x").status_code == 401  # stays revoked until a new token
    api.token = get_token(api.sim).json()["access_token"]
    assert api.list(workflowId="x").status_code == 200


def test_token_endpoint_faults(sim: SimulatorServer) -> None:
    sim.add_fault(Fault(kind="error500", endpoint="token", times=1))
    assert get_token(sim).status_code == 500
    assert get_token(sim).status_code == 200


def test_latency_applies_concurrently() -> None:
    with SimulatorServer(SimulatorConfig(**FAST_LIFECYCLE, latency_seconds=0.3)) as sim:
        token = get_token(sim).json()["access_token"]
        headers = {
            "Authorization": f"Bearer {token}",
            "Amazon-Advertising-API-ClientId": CLIENT_ID,
            "Amazon-Advertising-API-AdvertiserId": ADVERTISER_ID,
            "Amazon-Advertising-API-MarketplaceId": MARKETPLACE_ID,
        }

        async def many() -> list[int]:
            async with httpx.AsyncClient(base_url=sim.url, headers=headers, timeout=2.0) as client:
                url = f"/amc/reporting/{INSTANCE_ID}/workflowExecutions"
                answers = await asyncio.gather(*(client.get(url, params={"workflowId": "x"}) for _ in range(20)))
                return [a.status_code for a in answers]

        assert asyncio.run(many()) == [200] * 20
        assert sim.state is not None and sim.state.max_in_flight > 1  # asyncio.sleep, not a blocking sleep


def test_download_throttle_is_s3_xml(api: Api) -> None:
    execution_id = api.succeeded()
    url = api.urls(execution_id).json()["downloadUrls"][0]
    api.sim.add_fault(Fault(kind="throttle", endpoint="download", times=1, retry_after=2))
    response = httpx.get(url)
    assert response.status_code == 503 and "<Code>SlowDown</Code>" in response.text
    assert response.headers["Retry-After"] == "2"
    assert httpx.get(url).status_code == 200
