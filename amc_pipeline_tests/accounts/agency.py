"""An agency-sized setup in miniature: two Amazon Ads accounts with their own credentials, five
instances (three and two), one simulator that knows both accounts, and the project's own
Definitions reading each account's credentials from the environment variables its config names."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dagster as dg

from amc_pipeline.config import PipelineConfig, parse_config
from amc_pipeline.defs.resources import AmcAccountCredentials, AmcResource, StoreResource
from amc_pipeline.partitions import window_for
from amc_pipeline.simulator import SimulatedAccount, SimulatorServer
from amc_pipeline.store.store import ExecutionStore
from amc_pipeline_tests.harness import FAST_MONITOR, sim_config

#: Each account: its config entry's credential variables, the simulator's credentials, its instances.
ACCOUNTS: dict[str, dict[str, Any]] = {
    "agency_a": {
        "env": ("AMC_A_CLIENT_ID", "AMC_A_CLIENT_SECRET", "AMC_A_REFRESH_TOKEN"),
        "credentials": ("amzn1.application-oa2-client.agencya", "secret-A-7c1d", "Atzr|refresh-A-90ab"),
        "instances": {"amcaaa001": ("ENTITYAAA1", "ATVPDKIKX0DER"), "amcaaa002": ("ENTITYAAA2", "ATVPDKIKX0DER"),
                      "amcaaa003": ("ENTITYAAA3", "A1F83G8C2ARO7P")},
    },
    "agency_b": {
        "env": ("AMC_B_CLIENT_ID", "AMC_B_CLIENT_SECRET", "AMC_B_REFRESH_TOKEN"),
        "credentials": ("amzn1.application-oa2-client.agencyb", "secret-B-4e2f", "Atzr|refresh-B-13cd"),
        "instances": {"amcbbb001": ("ENTITYBBB1", "ATVPDKIKX0DER"), "amcbbb002": ("ENTITYBBB2", "A2EUQ1WTGCTBG2")},
    },
}
#: Instances tagged brand=acme: one under each account, so a tag selection spans accounts.
ACME = {"amcaaa002", "amcbbb001"}
ALL_INSTANCES = [iid for spec in ACCOUNTS.values() for iid in spec["instances"]]
SQL = "SELECT campaign, SUM(impressions) AS impressions FROM sponsored_ads_traffic GROUP BY 1"


def agency_config(workflows: list[dict[str, Any]], *, monitor: dict | None = None,
                  account_limits: dict[str, int] | None = None, instance: dict | None = None) -> PipelineConfig:
    accounts = []
    instances = []
    for name, spec in ACCOUNTS.items():
        client_id_env, secret_env, refresh_env = spec["env"]
        accounts.append({"name": name, "client_id_env": client_id_env, "client_secret_env": secret_env,
                         "refresh_token_env": refresh_env,
                         **({"max_active_executions": account_limits[name]} if name in (account_limits or {}) else {})})
        for iid, (adv, mkt) in spec["instances"].items():
            instances.append({"instance_id": iid, "advertiser_id": adv, "marketplace_id": mkt, "account": name,
                              "tags": {"brand": "acme" if iid in ACME else "other"}, **(instance or {})})
    base = {"partitions": "daily", "start_date": "2026-10-01", "data_lag_days": 0, "sql": SQL}
    return parse_config({"accounts": accounts, "instances": instances,
                         "workflows": [{**base, **w} for w in workflows],
                         "monitor": {**FAST_MONITOR, **(monitor or {})}})


def agency_simulator(**overrides: Any) -> SimulatorServer:
    """The simulator: agency_a as its primary account, agency_b beside it."""
    a, b = ACCOUNTS["agency_a"], ACCOUNTS["agency_b"]
    client_id, secret, refresh = a["credentials"]
    b_id, b_secret, b_refresh = b["credentials"]
    b_limit = overrides.pop("b_max_active_executions", 200)
    return SimulatorServer(sim_config(
        client_id=client_id, client_secret=secret, refresh_token=refresh, instances=dict(a["instances"]),
        accounts=[SimulatedAccount(b_id, b_secret, b_refresh, dict(b["instances"]), max_active_executions=b_limit)],
        **overrides))


@dataclass
class Agency:
    sim: SimulatorServer
    store: ExecutionStore
    config: PipelineConfig

    def resource(self) -> AmcResource:
        """The `amc` resource as production builds it: one EnvVar-backed credential set per account."""
        return AmcResource(api_url=self.sim.url, token_url=self.sim.token_url, retry_budget_seconds=5, accounts={
            name: AmcAccountCredentials(client_id=dg.EnvVar(spec["env"][0]), client_secret=dg.EnvVar(spec["env"][1]),
                                        refresh_token=dg.EnvVar(spec["env"][2]))
            for name, spec in ACCOUNTS.items()})

    def resources(self) -> dict[str, Any]:
        return {"amc": self.resource(), "amc_store": StoreResource(
            database_url=self.store.engine.url.render_as_string(hide_password=False))}

    def request(self, workflow: str, partition_key: str) -> None:
        window = window_for(self.config.workflow(workflow), partition_key)
        self.store.enqueue(workflow=workflow, instance_id=window.instance_id, partition_key=partition_key,
                           window_start=window.start_utc, window_end=window.end_utc)

    def status(self, workflow: str, partition_key: str) -> str | None:
        execution = self.store.get_live(workflow, partition_key)
        return execution.attempt.status if execution and execution.attempt else None

    def client_id(self, account: str) -> str:
        return ACCOUNTS[account]["credentials"][0]


@contextmanager
def agency(monkeypatch, tmp_path, workflows: list[dict[str, Any]], *, monitor: dict | None = None,
           account_limits: dict[str, int] | None = None, instance: dict | None = None,
           **sim_overrides: Any) -> Iterator[Agency]:
    """Simulator + store + config, and the environment Definitions read (each account's variables,
    the simulator's URLs, the store and data dir)."""
    config = agency_config(workflows, monitor=monitor, account_limits=account_limits, instance=instance)
    with agency_simulator(**sim_overrides) as sim:
        store = ExecutionStore(f"sqlite:///{tmp_path / 'store.db'}")
        env = {"AMC_API_URL": sim.url, "AMC_TOKEN_URL": sim.token_url,
               "AMC_PIPELINE_DATABASE_URL": store.engine.url.render_as_string(hide_password=False),
               "AMC_PIPELINE_DATA_DIR": str(tmp_path / "data")}
        for spec in ACCOUNTS.values():
            env.update(dict(zip(spec["env"], spec["credentials"], strict=True)))
        for name in ("AMC_CLIENT_ID", "AMC_CLIENT_SECRET", "AMC_REFRESH_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        try:
            yield Agency(sim=sim, store=store, config=config)
        finally:
            store.close()


def secrets() -> list[str]:
    """Every secret of both accounts (a leak check compares against these)."""
    return [value for spec in ACCOUNTS.values() for value in spec["credentials"][1:]]


__all__ = ["ACCOUNTS", "ACME", "ALL_INSTANCES", "Agency", "agency", "agency_config", "secrets"]
