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

from amc_pipeline.amc.accounts import DEFAULT_ACCOUNT, AccountClients, AsyncAccountClients
from amc_pipeline.amc.auth import AmcCredentials, TokenState
from amc_pipeline.amc.client import AmcClient, AsyncAmcClient, RetryPolicy
from amc_pipeline.amc.redact import mask, redact_url
from amc_pipeline.config import DEFAULT_API_URL, DEFAULT_TOKEN_URL, PipelineConfig, Settings
from amc_pipeline.store.cache import store_for
from amc_pipeline.store.store import ExecutionStore

_SECRET_FIELDS = frozenset({"client_secret", "refresh_token"})


class AmcAccountCredentials(dg.Config):
    """One account's Login-with-Amazon credentials, each given as an EnvVar (never inline)."""

    client_id: str = Field(description="LWA client id, e.g. EnvVar('AMC_CLIENT_ID').")
    client_secret: str = Field(description="LWA client secret, as an EnvVar.")
    refresh_token: str = Field(description="LWA refresh token, as an EnvVar.")

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, _Masked(value) if name in _SECRET_FIELDS else value


class AmcResource(dg.ConfigurableResource):
    """AMC API access for assets, ops and sensors: `get_client()` / `get_async_client(n)`.

    The clients route each call to the credentials of the instance's account (`accounts`, keyed by
    the config's account names); the top-level client_id / client_secret / refresh_token are the
    `default` account when `accounts` does not name it (one account, as before accounts existed).
    """

    api_url: str = Field(default=DEFAULT_API_URL, description="AMC API host (or the simulator's URL).")
    token_url: str = Field(default=DEFAULT_TOKEN_URL, description="Login with Amazon token endpoint.")
    client_id: str | None = Field(default=None, description="The default account's LWA client id (EnvVar).")
    client_secret: str | None = Field(default=None, description="The default account's LWA client secret "
                                      "(EnvVar('AMC_CLIENT_SECRET'), never inline).")
    refresh_token: str | None = Field(default=None, description="The default account's LWA refresh token "
                                      "(EnvVar('AMC_REFRESH_TOKEN'), never inline).")
    accounts: dict[str, AmcAccountCredentials] = Field(
        default_factory=dict, description="Credentials per account name (config `accounts:`), as EnvVars.")
    timeout_seconds: float = Field(default=30.0, gt=0, description="Per-request read/write/pool timeout.")
    retry_budget_seconds: float = Field(
        default=120.0, gt=0, description="Total time one call may spend retrying transient failures."
    )

    _tokens: dict[str, TokenState] = PrivateAttr(default_factory=dict)
    _clients: dict[str, AmcClient] = PrivateAttr(default_factory=dict)
    _router: AccountClients | None = PrivateAttr(default=None)

    def account_names(self) -> list[str]:
        names = list(self.accounts)
        if DEFAULT_ACCOUNT not in self.accounts and self.client_id is not None:
            names.insert(0, DEFAULT_ACCOUNT)
        return names

    def credentials(self, account: str = DEFAULT_ACCOUNT) -> AmcCredentials:
        """The account's credentials; KeyError names an account the resource has none for."""
        given = self.accounts.get(account)
        if given is not None:
            return AmcCredentials(client_id=given.client_id, client_secret=given.client_secret,
                                  refresh_token=given.refresh_token, token_url=self.token_url)
        if account == DEFAULT_ACCOUNT and self.client_id is not None:
            return AmcCredentials(client_id=self.client_id, client_secret=self.client_secret or "",
                                  refresh_token=self.refresh_token or "", token_url=self.token_url)
        raise KeyError(f"no credentials for AMC account {account!r} (configured: "
                       f"{', '.join(self.account_names()) or 'none'})")

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(budget_seconds=self.retry_budget_seconds)

    def token_state(self, account: str = DEFAULT_ACCOUNT) -> TokenState:
        """The token cache every client of this account shares for the run (created on first use)."""
        state = self._tokens.get(account)
        if state is None:
            state = self._tokens[account] = TokenState(self.credentials(account))
        return state

    @property
    def token_refreshes(self) -> int:
        """Access tokens fetched by this resource instance's clients, all accounts (0 before any call)."""
        return sum(state.refresh_count for state in self._tokens.values())

    def refreshes_by_account(self) -> dict[str, int]:
        return {account: state.refresh_count for account, state in self._tokens.items()}

    def account_client(self, account: str = DEFAULT_ACCOUNT) -> AmcClient:
        """The run's blocking client of one account: made on first use, reused after, closed at teardown.

        Using it as a context manager still works (and closes it); the next call then makes a new
        client on the same token cache, so no token is fetched twice.
        """
        client = self._clients.get(account)
        if client is None or client.closed:
            client = self._clients[account] = AmcClient(
                self.api_url, self.credentials(account), timeout=self.timeout_seconds,
                retry=self.retry_policy(), tokens=self.token_state(account))
        return client

    def get_client(self) -> AccountClients:
        """The run's blocking client: each call goes out with its instance's account's credentials.

        The same object until it is closed (a `with` block closes it); then a new one, on the same
        token caches.
        """
        if self._router is None or self._router.closed:
            self._router = AccountClients(self.account_client, self.api_url, close=self.close)
        return self._router

    def get_async_client(self, concurrency: int = 10) -> AsyncAccountClients:
        """An asyncio client (bound to the caller's event loop, one connection pool per account) on the
        run's token caches."""

        def make(account: str) -> AsyncAmcClient:
            return AsyncAmcClient(self.api_url, self.credentials(account), concurrency=concurrency,
                                  timeout=self.timeout_seconds, retry=self.retry_policy(),
                                  tokens=self.token_state(account))

        return AsyncAccountClients(make)

    def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
        if self._router is not None:
            self._router.closed = True

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


def resources_defs(config: PipelineConfig) -> dg.Definitions:
    """`amc` and `amc_store`, read from the environment: each account's credentials as EnvVars of the
    variables it names (the implicit `default` account: AMC_CLIENT_ID / _SECRET / AMC_REFRESH_TOKEN)."""
    settings = Settings.from_env()
    return dg.Definitions(resources={
        "amc": AmcResource(
            api_url=_env_or("AMC_API_URL", DEFAULT_API_URL),
            token_url=_env_or("AMC_TOKEN_URL", DEFAULT_TOKEN_URL),
            accounts={
                account.name: AmcAccountCredentials(
                    client_id=dg.EnvVar(account.client_id_env),
                    client_secret=dg.EnvVar(account.client_secret_env),
                    refresh_token=dg.EnvVar(account.refresh_token_env),
                )
                for account in config.accounts
            },
        ),
        "amc_store": StoreResource(database_url=_env_or("AMC_PIPELINE_DATABASE_URL", settings.database_url)),
    })
