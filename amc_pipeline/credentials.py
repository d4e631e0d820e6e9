"""Each account's Login-with-Amazon credentials, read from the environment variables its config names.

Why here and not in the resource: the command line (`sync`, `doctor`) runs outside Dagster and needs
the same per-account credentials the `amc` resource gets as EnvVars. A missing variable is named,
never its value.
"""

from __future__ import annotations

import os

from amc_pipeline.amc.accounts import AccountClients, clients_by_account
from amc_pipeline.amc.auth import AmcCredentials
from amc_pipeline.amc.client import RetryPolicy
from amc_pipeline.config import AccountConfig, PipelineConfig, Settings


class MissingCredentials(ValueError):
    """An account's credential variables are not all set."""


def missing_variables(account: AccountConfig) -> list[str]:
    return [name for name in account.env_names if not os.environ.get(name)]


def account_credentials(account: AccountConfig, token_url: str) -> AmcCredentials:
    missing = missing_variables(account)
    if missing:
        raise MissingCredentials(f"account {account.name}: environment variable(s) not set: {', '.join(missing)}")
    return AmcCredentials(client_id=os.environ[account.client_id_env],
                          client_secret=os.environ[account.client_secret_env],
                          refresh_token=os.environ[account.refresh_token_env], token_url=token_url)


def env_clients(config: PipelineConfig, settings: Settings, *, retry: RetryPolicy | None = None) -> AccountClients:
    """A client router for the command line: each account's client made from its variables on first use."""
    return clients_by_account(lambda name: account_credentials(config.account(name), settings.token_url),
                              settings.api_url, **({"retry": retry} if retry is not None else {}))
