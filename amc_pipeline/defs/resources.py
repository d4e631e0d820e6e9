"""The project's Dagster resources: AMC API access and the execution store.

Secrets: `client_secret` and `refresh_token` (and ideally `client_id`) are given as
`dagster.EnvVar(...)`, so Dagster stores and displays only the variable *name* (in the UI's
resource config, run config snapshots and the instance's storage) and resolves the value in the
process that uses the resource. This resource's repr also masks the secret fields whatever they
hold, so a log line or a traceback that prints it leaks nothing.

Why the AMC resource caches: Login with Amazon tokens live an hour, and a monitor run used to mint
one per op (a new client per `get_client()` call). Like Dagster's own integrations, the resource
now keeps one blocking client and one token cache for the life of the run (the resource instance
Dagster initializes per run), and every async client it hands out shares that token cache: one
token refresh per run per credential set. `teardown_after_execution` closes the client.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from amc_pipeline.amc.auth import AmcCredentials, TokenState
from amc_pipeline.amc.client import AmcClient, AsyncAmcClient, RetryPolicy
from amc_pipeline.amc.redact import mask, redact_url
from amc_pipeline.config import DEFAULT_API_URL, DEFAULT_TOKEN_URL, Settings
from amc_pipeline.store.cache import store_for
from amc_pipeline.store.store import ExecutionStore

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

    _tokens: TokenState | None = PrivateAttr(default=None)
    _client: AmcClient | None = PrivateAttr(default=None)

    def credentials(self) -> AmcCredentials:
        return AmcCredentials(
            client_id=self.client_id,
            client_secret=self.client_secret,
            refresh_token=self.refresh_token,
            token_url=self.token_url,
        )

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(budget_seconds=self.retry_budget_seconds)

    def token_state(self) -> TokenState:
        """The token cache every client of this resource instance shares (created on first use)."""
        if self._tokens is None:
            self._tokens = TokenState(self.credentials())
        return self._tokens

    @property
    def token_refreshes(self) -> int:
        """Access tokens fetched by this resource instance's clients (0 before any call)."""
        return self._tokens.refresh_count if self._tokens is not None else 0

    def get_client(self) -> AmcClient:
        """The run's blocking client: made on first use, reused after, closed at teardown.

        Using it as a context manager still works (and closes it); the next call then makes a new
        client on the same token cache, so no token is fetched twice.
        """
        if self._client is None or self._client.closed:
            self._client = AmcClient(self.api_url, self.credentials(), timeout=self.timeout_seconds,
                                     retry=self.retry_policy(), tokens=self.token_state())
        return self._client

    def get_async_client(self, concurrency: int = 10) -> AsyncAmcClient:
        """A new asyncio client (bound to the caller's event loop) on the run's token cache."""
        return AsyncAmcClient(
            self.api_url,
            self.credentials(),
            concurrency=concurrency,
            timeout=self.timeout_seconds,
            retry=self.retry_policy(),
            tokens=self.token_state(),
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

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


class StoreResource(dg.ConfigurableResource):
    """The execution store: SQLite under the data dir by default, PostgreSQL by URL in production."""

    database_url: str

    def get_store(self) -> ExecutionStore:
        return store_for(self.database_url)


def _env_or(name: str, default: str) -> str | dg.EnvVar:
    """An EnvVar when set (so Dagster shows the name, never the value), else the default."""
    return dg.EnvVar(name) if os.environ.get(name) else default


def resources_defs() -> dg.Definitions:
    """`amc` and `amc_store`, read from the environment (credentials always as EnvVars)."""
    settings = Settings.from_env()
    return dg.Definitions(resources={
        "amc": AmcResource(
            api_url=_env_or("AMC_API_URL", DEFAULT_API_URL),
            token_url=_env_or("AMC_TOKEN_URL", DEFAULT_TOKEN_URL),
            client_id=dg.EnvVar("AMC_CLIENT_ID"),
            client_secret=dg.EnvVar("AMC_CLIENT_SECRET"),
            refresh_token=dg.EnvVar("AMC_REFRESH_TOKEN"),
        ),
        "amc_store": StoreResource(database_url=_env_or("AMC_PIPELINE_DATABASE_URL", settings.database_url)),
    })
