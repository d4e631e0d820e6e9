"""Who may call: Login with Amazon's token endpoint and the header checks of every reporting call.

Both sides of AMC's authentication live together because they must agree: the token endpoint
issues the access tokens that `authorize` later accepts (or rejects as expired/revoked), and the
order of `authorize`'s checks is the order AMC answers in (401, 403, 400, 404, 403).
"""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from amc_pipeline.simulator.routes.responses import EXEC_CT, amc_error
from amc_pipeline.simulator.state import SimulatorState


class TokenRoutes:
    """`POST /auth/o2/token`: a refresh-token grant, checked against the configured credentials."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        return [Route("/auth/o2/token", self.token, methods=["POST"])]

    async def token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        cfg = self.state.config
        if form.get("grant_type") != "refresh_token":
            return JSONResponse(
                {"error": "unsupported_grant_type", "error_description": "grant_type must be refresh_token"},
                400,
            )
        refused = self.state.accounts.grant(form.get("client_id"), form.get("client_secret"), form.get("refresh_token"))
        if refused:
            return JSONResponse(
                {
                    "error": "invalid_grant",
                    "error_description": f"The request has an invalid grant parameter : {refused}",
                },
                400,
            )
        token = self.state.issue_token(form["client_id"])
        return JSONResponse(
            {
                "access_token": token,
                "refresh_token": form["refresh_token"],
                "token_type": "bearer",
                "expires_in": int(cfg.token_ttl_seconds),
            }
        )


def authorize(
    state: SimulatorState, request: Request, content_type: str = EXEC_CT
) -> tuple[str, Response | None]:
    """Check the four headers like AMC: 401, then 403 (client), 400 (missing), 404, 403 (advertiser)."""
    instance = request.path_params["instanceId"]
    auth = request.headers.get("authorization", "")
    if not auth.lower().startswith("bearer ") or not auth[7:].strip():
        return instance, amc_error(401, "Unauthorized: missing bearer token", content_type)
    client_id, why = state.check_token(auth[7:].strip())
    if client_id is None:
        text = "The access token has expired" if why == "expired" else "Invalid access token"
        return instance, amc_error(401, f"Unauthorized: {text}", content_type)
    header_client = request.headers.get("amazon-advertising-api-clientid")
    if header_client != client_id:
        return instance, amc_error(403, "Forbidden: the client id does not match the access token", content_type)
    advertiser = request.headers.get("amazon-advertising-api-advertiserid")
    marketplace = request.headers.get("amazon-advertising-api-marketplaceid")
    if not advertiser:
        return instance, amc_error(400, "Missing required header Amazon-Advertising-API-AdvertiserId", content_type)
    if not marketplace:
        return instance, amc_error(
            400, "Missing required header Amazon-Advertising-API-MarketplaceId", content_type
        )
    with state.lock:
        known = state.instances.get(instance)
    if known is None:
        return instance, amc_error(404, f"Instance {instance} not found", content_type)
    if not state.accounts.may_use(client_id, instance):
        return instance, amc_error(403, f"Forbidden: client {client_id} has no access to instance {instance}",
                                   content_type)
    if advertiser != known[0]:
        return instance, amc_error(
            403, f"Advertiser {advertiser} has no access to instance {instance}", content_type
        )
    if marketplace != known[1]:
        return instance, amc_error(
            403, f"Marketplace {marketplace} does not match instance {instance}", content_type
        )
    return instance, None
