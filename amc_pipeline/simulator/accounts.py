"""The simulator's Amazon Ads accounts: whose credentials reach which instances, and each account's
limit on executions in parallel.

Why its own piece: real AMC answers per account (Login-with-Amazon credentials), and an agency runs
several accounts, each with many instances. A token is only good for its own account's instances
(403 otherwise), revoking one account's refresh token leaves the others working, and the account's
parallel limit (200 through the API) spans all its instances. The simulator records the highest
number of executions each account had active at once, so a test can prove our submitter never went
past the limit, measured where AMC would measure it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from amc_pipeline.simulator.config import SimulatorConfig


@dataclass
class Account:
    client_id: str
    client_secret: str
    refresh_token: str
    max_active_executions: int
    instances: set[str] = field(default_factory=set)
    revoked: bool = False
    peak_active: int = 0
    refused_creates: int = 0


class Accounts:
    """Every configured account by client id, and the instance -> client id map."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.lock = threading.RLock()
        self.by_client: dict[str, Account] = {}
        self.owner: dict[str, str] = {}
        self.primary = config.client_id
        self.add(config.client_id, config.client_secret, config.refresh_token, config.max_active_executions,
                 config.instances)
        for extra in config.accounts:
            self.add(extra.client_id, extra.client_secret, extra.refresh_token, extra.max_active_executions,
                     extra.instances)

    def add(self, client_id: str, client_secret: str, refresh_token: str, max_active: int,
            instances: dict[str, tuple[str, str]]) -> None:
        with self.lock:
            if client_id in self.by_client:
                raise ValueError(f"two simulated accounts share client id {client_id!r}")
            self.by_client[client_id] = Account(client_id, client_secret, refresh_token, max_active,
                                                set(instances))
            for instance in instances:
                self.own(instance, client_id)

    def own(self, instance: str, client_id: str | None = None) -> None:
        """Give `instance` to an account (the primary one by default)."""
        with self.lock:
            client_id = client_id or self.primary
            previous = self.owner.get(instance)
            if previous is not None:
                self.by_client[previous].instances.discard(instance)
            self.owner[instance] = client_id
            self.by_client[client_id].instances.add(instance)

    def grant(self, client_id: str | None, client_secret: str | None, refresh_token: str | None) -> str:
        """'' when the refresh-token grant is good; else which parameter LWA names (client or refresh_token)."""
        with self.lock:
            account = self.by_client.get(client_id or "")
            if account is None or account.client_secret != client_secret:
                return "client"
            if account.revoked or account.refresh_token != refresh_token:
                return "refresh_token"
            return ""

    def revoke(self, client_id: str) -> None:
        """The account's refresh token stops working (its user revoked the app's access)."""
        with self.lock:
            self.by_client[client_id].revoked = True

    def may_use(self, client_id: str, instance: str) -> bool:
        with self.lock:
            return self.owner.get(instance) == client_id

    def account_of(self, instance: str) -> Account | None:
        with self.lock:
            client_id = self.owner.get(instance)
            return self.by_client.get(client_id) if client_id else None

    def summary(self) -> dict[str, dict]:
        with self.lock:
            return {
                a.client_id: {"instances": sorted(a.instances), "max_active_executions": a.max_active_executions,
                              "peak_active": a.peak_active, "refused_creates": a.refused_creates,
                              "revoked": a.revoked}
                for a in self.by_client.values()
            }
