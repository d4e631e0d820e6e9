"""One client per Amazon Ads account, chosen by the instance each call names.

Why a router and not a client per call site: every call of the client already names its instance,
and an instance belongs to exactly one account (config `accounts:`), so the engine (submit, poll,
land, cancel) stays account-blind and keeps its one `client` argument. Each account's client has
its own token cache, so a run refreshes one token per account it touches, and an account whose
refresh token was revoked fails only the calls for its own instances.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from amc_pipeline.amc.async_client import AsyncAmcClient
from amc_pipeline.amc.auth import AmcCredentials
from amc_pipeline.amc.client import AmcClient
from amc_pipeline.amc.core import InstanceLike
from amc_pipeline.amc.models import AmcExecution
from amc_pipeline.amc.workflows_api import AmcScheduleRecord, SavedWorkflow

#: The account of an instance that names none (a bare InstanceLike, or a config without `accounts:`).
DEFAULT_ACCOUNT = "default"


def account_of(instance: InstanceLike) -> str:
    return getattr(instance, "account", None) or DEFAULT_ACCOUNT


class AccountClients:
    """The blocking client's API, each call sent with the credentials of its instance's account.

    `client_for(account)` makes (or returns) that account's client; clients are made on first use,
    so a run that touches one account never refreshes another's token.
    """

    def __init__(self, client_for: Callable[[str], AmcClient], api_url: str,
                 close: Callable[[], None] | None = None) -> None:
        self._client_for = client_for
        self._close = close
        self.api_url = api_url
        self.closed = False

    def __enter__(self) -> AccountClients:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the account clients this router handed out (their token caches live on)."""
        if not self.closed:
            self.closed = True
            if self._close is not None:
                self._close()

    def for_instance(self, instance: InstanceLike) -> AmcClient:
        return self._client_for(account_of(instance))

    def create_execution(self, instance: InstanceLike, body: dict[str, Any]) -> AmcExecution:
        return self.for_instance(instance).create_execution(instance, body)

    def get_execution(self, instance: InstanceLike, execution_id: str) -> AmcExecution:
        return self.for_instance(instance).get_execution(instance, execution_id)

    def list_executions_page(self, instance: InstanceLike, **kwargs: Any) -> tuple[list[AmcExecution], str | None]:
        return self.for_instance(instance).list_executions_page(instance, **kwargs)

    def list_executions(self, instance: InstanceLike, **kwargs: Any) -> Iterator[AmcExecution]:
        return self.for_instance(instance).list_executions(instance, **kwargs)

    def cancel_execution(self, instance: InstanceLike, execution_id: str) -> AmcExecution | None:
        return self.for_instance(instance).cancel_execution(instance, execution_id)

    def get_download_urls(self, instance: InstanceLike, execution_id: str) -> list[str]:
        return self.for_instance(instance).get_download_urls(instance, execution_id)

    def get_workflow(self, instance: InstanceLike, workflow_id: str) -> SavedWorkflow | None:
        return self.for_instance(instance).get_workflow(instance, workflow_id)

    def save_workflow(self, instance: InstanceLike, workflow: SavedWorkflow, *, create: bool) -> None:
        self.for_instance(instance).save_workflow(instance, workflow, create=create)

    def list_schedules(self, instance: InstanceLike) -> Iterator[AmcScheduleRecord]:
        return self.for_instance(instance).list_schedules(instance)

    def save_schedule(self, instance: InstanceLike, schedule: AmcScheduleRecord, *, create: bool) -> None:
        self.for_instance(instance).save_schedule(instance, schedule, create=create)

    def __repr__(self) -> str:
        return f"AccountClients(api_url={self.api_url!r})"


def clients_by_account(credentials_for: Callable[[str], AmcCredentials], api_url: str,
                       **client_options: Any) -> AccountClients:
    """A router over blocking clients made on first use from `credentials_for(account)` (the CLI's
    `sync` and `doctor`, outside Dagster's resource); closing it closes every client it made."""
    made: dict[str, AmcClient] = {}

    def client_for(account: str) -> AmcClient:
        if account not in made:
            made[account] = AmcClient(api_url, credentials_for(account), **client_options)
        return made[account]

    def close() -> None:
        for client in made.values():
            client.close()

    return AccountClients(client_for, api_url, close=close)


class AsyncAccountClients:
    """The asyncio client's API routed by account, for one event loop (`async with`).

    Each account's async client is opened on first use inside the loop and closed on exit.
    """

    def __init__(self, make: Callable[[str], AsyncAmcClient]) -> None:
        self._make = make
        self._clients: dict[str, AsyncAmcClient] = {}

    def for_instance(self, instance: InstanceLike) -> AsyncAmcClient:
        account = account_of(instance)
        client = self._clients.get(account)
        if client is None:
            client = self._clients[account] = self._make(account)
        return client

    async def __aenter__(self) -> AsyncAccountClients:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()

    def create_execution(self, instance: InstanceLike, body: dict[str, Any]) -> Awaitable[AmcExecution]:
        return self.for_instance(instance).create_execution(instance, body)

    def get_execution(self, instance: InstanceLike, execution_id: str) -> Awaitable[AmcExecution]:
        return self.for_instance(instance).get_execution(instance, execution_id)

    def list_executions_page(self, instance: InstanceLike, **kwargs: Any
                             ) -> Awaitable[tuple[list[AmcExecution], str | None]]:
        return self.for_instance(instance).list_executions_page(instance, **kwargs)

    def list_executions(self, instance: InstanceLike, **kwargs: Any) -> AsyncIterator[AmcExecution]:
        return self.for_instance(instance).list_executions(instance, **kwargs)

    def cancel_execution(self, instance: InstanceLike, execution_id: str) -> Awaitable[AmcExecution | None]:
        return self.for_instance(instance).cancel_execution(instance, execution_id)

    def get_download_urls(self, instance: InstanceLike, execution_id: str) -> Awaitable[list[str]]:
        return self.for_instance(instance).get_download_urls(instance, execution_id)
