"""Login with Amazon token flow and AMC's four-header checks."""

from __future__ import annotations

from amc_pipeline.simulator import SimulatorServer
from amc_pipeline_tests.constants import OTHER_INSTANCE_ID, REFRESH_TOKEN

from .api import Api, get_token


def test_token_flow_returns_bearer_token(sim: SimulatorServer) -> None:
    response = get_token(sim)
    assert response.status_code == 200
    body = response.json()
    assert body["access_token"].startswith("Atza|")
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["refresh_token"] == REFRESH_TOKEN
    assert response.headers["x-amz-request-id"]


def test_bad_credentials_are_invalid_grant(sim: SimulatorServer) -> None:
    for override in ({"client_secret": "nope"}, {"refresh_token": "nope"}, {"client_id": "other"}):
        response = get_token(sim, **override)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"
        assert "error_description" in response.json()
    assert get_token(sim, grant_type="password").status_code == 400


def test_missing_unknown_and_expired_tokens_are_401(sim: SimulatorServer, api: Api) -> None:
    assert api.list(workflowId="x").status_code == 200
    no_auth = api.request("GET", "/workflowExecutions", headers=api.headers(Authorization=None))
    assert no_auth.status_code == 401
    assert no_auth.json()["code"] == "401"
    bogus = api.request("GET", "/workflowExecutions", headers=api.headers(Authorization="Bearer Atza|bogus"))
    assert bogus.status_code == 401
    sim.advance_clock(3601)
    expired = api.list(workflowId="x")
    assert expired.status_code == 401
    assert "expired" in expired.json()["details"]


def test_revoke_tokens_invalidates_issued_tokens(sim: SimulatorServer, api: Api) -> None:
    assert api.list(workflowId="x").status_code == 200
    sim.revoke_tokens()
    assert api.list(workflowId="x").status_code == 401
    api.token = get_token(sim).json()["access_token"]
    assert api.list(workflowId="x").status_code == 200


def test_header_checks(sim: SimulatorServer, api: Api) -> None:
    def status(**overrides: str | None) -> int:
        headers = api.headers(**overrides)
        return api.request("GET", "/workflowExecutions", headers=headers, params={"workflowId": "x"}).status_code

    assert status() == 200
    assert status(**{"Amazon-Advertising-API-ClientId": "someone-else"}) == 403
    assert status(**{"Amazon-Advertising-API-ClientId": None}) == 403
    assert status(**{"Amazon-Advertising-API-AdvertiserId": "ENTITYOTHER"}) == 403
    assert status(**{"Amazon-Advertising-API-MarketplaceId": "A1PA6795UKMFR9"}) == 403
    assert status(**{"Amazon-Advertising-API-AdvertiserId": None}) == 400
    assert status(**{"Amazon-Advertising-API-MarketplaceId": None}) == 400
    other = Api(sim, instance="nosuchinstance")
    try:
        response = other.list(workflowId="x")
        assert response.status_code == 404
        assert response.json() == {"code": "404", "details": "Instance nosuchinstance not found"}
    finally:
        other.close()


def test_registered_instance_is_usable(sim: SimulatorServer) -> None:
    sim.register_instance(OTHER_INSTANCE_ID, "ENTITY2BB2BB22BBB2", "A1PA6795UKMFR9")
    other = Api(sim, instance=OTHER_INSTANCE_ID)
    try:
        headers = other.headers(
            **{
                "Amazon-Advertising-API-AdvertiserId": "ENTITY2BB2BB22BBB2",
                "Amazon-Advertising-API-MarketplaceId": "A1PA6795UKMFR9",
            }
        )
        response = other.request("GET", "/workflowExecutions", headers=headers, params={"workflowId": "x"})
        assert response.status_code == 200
        assert other.list(workflowId="x").status_code == 403  # the default instance's advertiser
    finally:
        other.close()


def test_every_response_has_request_ids_and_content_type(api: Api) -> None:
    for response in (api.create(), api.list(workflowId="x"), api.get("missing")):
        assert response.headers["x-amz-request-id"] == response.headers["x-amz-rid"]
        assert response.headers["content-type"].startswith("application/vnd.amcworkflowexecutions.v1+json")
    workflows = api.request("GET", "/workflows")
    assert workflows.headers["content-type"].startswith("application/vnd.amcworkflows.v1+json")
