"""A tiny httpx client that speaks AMC's headers to a running simulator, and the bodies it sends.

A plain module (not a conftest) so tests outside this folder can use it too: the client tests save
a workflow through it, and the adoption tests start "someone else's" executions with it.
"""

from __future__ import annotations

from typing import Any

import httpx

from amc_pipeline.simulator import SimulatorServer
from amc_pipeline_tests.constants import ADVERTISER_ID, CLIENT_ID, CREDENTIALS, INSTANCE_ID, MARKETPLACE_ID


def explicit_body(workflow_id: str = "daily-t1", sql: str = "SELECT campaign FROM dsp_impressions", **extra: Any):
    body: dict[str, Any] = {
        "workflow": {"workflowId": workflow_id, "sqlQuery": sql},
        "timeWindowType": "EXPLICIT",
        "timeWindowStart": "2024-01-20T00:00:00",
        "timeWindowEnd": "2024-01-21T00:00:00",
        "timeWindowTimeZone": "UTC",
    }
    body.update(extra)
    return body


def get_token(sim: SimulatorServer, **overrides: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", **CREDENTIALS}
    form.update(overrides)
    return httpx.post(sim.token_url, data=form, timeout=10)


class Api:
    """Authenticated httpx client for one instance: just enough to exercise the simulator."""

    def __init__(self, sim: SimulatorServer, instance: str = INSTANCE_ID) -> None:
        self.sim = sim
        self.instance = instance
        self.token = get_token(sim).json()["access_token"]
        self.client = httpx.Client(base_url=f"{sim.url}/amc/reporting/{instance}", timeout=10)

    def headers(self, **overrides: str | None) -> dict[str, str]:
        headers: dict[str, str | None] = {
            "Authorization": f"Bearer {self.token}",
            "Amazon-Advertising-API-ClientId": CLIENT_ID,
            "Amazon-Advertising-API-AdvertiserId": ADVERTISER_ID,
            "Amazon-Advertising-API-MarketplaceId": MARKETPLACE_ID,
        }
        headers.update(overrides)
        return {k: v for k, v in headers.items() if v is not None}

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        return self.client.request(method, path, headers=headers or self.headers(), **kw)

    def create(self, body: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        return self.request("POST", "/workflowExecutions", json=body or explicit_body(**kw))

    def get(self, execution_id: str) -> httpx.Response:
        return self.request("GET", f"/workflowExecutions/{execution_id}")

    def list(self, **params: Any) -> httpx.Response:
        return self.request("GET", "/workflowExecutions", params=params)

    def cancel(self, execution_id: str) -> httpx.Response:
        return self.request("PUT", f"/workflowExecutions/{execution_id}", json={"status": "CANCELLED"})

    def urls(self, execution_id: str) -> httpx.Response:
        return self.request("GET", f"/workflowExecutions/{execution_id}/downloadUrls")

    def succeeded(self, **kw: Any) -> str:
        """Create an execution and move the clock until it has SUCCEEDED; return its id."""
        created = self.create(**kw)
        assert created.status_code == 200, created.text
        execution_id = created.json()["workflowExecutionId"]
        self.sim.advance_clock(60)
        assert self.get(execution_id).json()["status"] == "SUCCEEDED"
        return execution_id

    def close(self) -> None:
        self.client.close()
