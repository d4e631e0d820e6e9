"""The Dagster resource that hands out AMC clients.

Secrets: give `client_secret` and `refresh_token` (and ideally `client_id`) as `dagster.EnvVar(...)`
in `Definitions`, e.g. `AmcResource(client_secret=EnvVar("AMC_CLIENT_SECRET"), ...)`. Dagster then
stores and displays only the variable *name* (in the UI's resource config, in run config snapshots
and in the instance's storage) and resolves the value in the process that uses the resource. A
plain string would be shown in the UI: don't. In addition this resource's own repr masks the
secret fields whatever they hold, so a log line or a traceback that prints it leaks nothing.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field

from amc_pipeline.amc.auth import AmcCredentials
from amc_pipeline.amc.client import AmcClient, AsyncAmcClient, RetryPolicy
from amc_pipeline.amc.redact import mask, redact_url
from amc_pipeline.config import DEFAULT_API_URL, DEFAULT_TOKEN_URL

_SECRET_FIELDS = frozenset({"client_secret", "refresh_token"})


class AmcResource(dg.ConfigurableResource):
    """AMC API access for assets, ops and sensors: `get_client()` / `get_async_client(n)`."""

    api_url: str = Field(default=DEFAULT_API_URL, description="AMC API host (or the simulator's URL).")
    token_url: str = Field(default=DEFAULT_TOKEN_URL, description="Login with Amazon token endpoint.")
    client_id: str = Field(description="LWA client id. Pass as EnvVar('AMC_CLIENT_ID').")
    client_secret: str = Field(description="LWA client secret. Pass as EnvVar('AMC_CLIENT_SECRET'), never inline.")
    refresh_token: str = Field(description="LWA refresh token. Pass as EnvVar('AMC_REFRESH_TOKEN'), never inline.")
    timeout_seconds: float = Field(default=30.0, gt=0, description="Per-request read/write/pool timeout.")
    retry_budget_seconds: float = Field(
        default=120.0, gt=0, description="Total time one call may spend retrying transient failures."
    )

    def credentials(self) -> AmcCredentials:
        return AmcCredentials(
            client_id=self.client_id,
            client_secret=self.client_secret,
            refresh_token=self.refresh_token,
            token_url=self.token_url,
        )

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(budget_seconds=self.retry_budget_seconds)

    def get_client(self) -> AmcClient:
        """A blocking client; the caller closes it (`with resource.get_client() as client:`)."""
        return AmcClient(self.api_url, self.credentials(), timeout=self.timeout_seconds, retry=self.retry_policy())

    def get_async_client(self, concurrency: int = 10) -> AsyncAmcClient:
        """An asyncio client with at most `concurrency` requests in flight (`async with ...`)."""
        return AsyncAmcClient(
            self.api_url,
            self.credentials(),
            concurrency=concurrency,
            timeout=self.timeout_seconds,
            retry=self.retry_policy(),
        )

    def __repr_args__(self) -> Any:
        # pydantic's repr: keep the field list, mask the secret values (resolved or not).
        for name, value in super().__repr_args__():
            if name in _SECRET_FIELDS:
                yield name, _Masked(value)
            elif name in ("api_url", "token_url") and isinstance(value, str):
                yield name, redact_url(value)
            else:
                yield name, value


class _Masked:
    """Prints as *** (or the EnvVar's name, which is not secret)."""

    def __init__(self, value: Any) -> None:
        self._text = f"EnvVar({value.env_var_name!r})" if isinstance(value, dg.EnvVar) else mask(value)

    def __repr__(self) -> str:
        return self._text
