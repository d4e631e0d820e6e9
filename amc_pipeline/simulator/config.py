"""Simulator configuration: scenarios, faults and the simulated AMC account.

Plain dataclasses so tests build them in Python and the CLI loads them from a JSON/YAML mapping
(`SimulatorConfig.from_dict`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

SCENARIO_KINDS = (
    "succeed",
    "fail",
    "sql_error",
    "stuck_pending",
    "stuck_running",
    "cancelled",
    "rejected",
    "unknown_status",
)

FAULT_KINDS = (
    "throttle",
    "error500",
    "timeout504",
    "slow",
    "drop",
    "lost_create_response",
    "truncate_download",
    "expire_url",
    "revoke_token",
)

#: Endpoint names used by faults and stats.
ENDPOINTS = ("token", "create", "get", "list", "cancel", "download_urls", "download", "workflows", "schedules")



def _from_known_fields(cls: Any, data: dict[str, Any], what: str) -> Any:
    """Build a dataclass from a mapping, naming any field it does not have (a typo in an admin call)."""
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} field(s): {', '.join(sorted(unknown))}")
    return cls(**data)

@dataclass
class Scenario:
    """How executions of one workflow key behave.

    rows/files None → deterministic from (workflow key, window). `columns` is a list of
    {"name", "dataType", "columnType"} dicts (or (name, dataType) pairs). `result_files` serves the
    given CSV files byte for byte instead of generated ones.
    """

    kind: str = "succeed"
    rows: int | None = None
    files: int | None = None
    failure_reason: str | None = None
    unknown_status_seconds: float = 5.0
    publishing: bool = False
    columns: list[Any] | None = None
    result_files: list[str | Path] | None = None

    def __post_init__(self) -> None:
        if self.kind not in SCENARIO_KINDS:
            raise ValueError(f"unknown scenario kind {self.kind!r}; expected one of {', '.join(SCENARIO_KINDS)}")
        if self.files is not None and not 1 <= self.files <= 5:
            raise ValueError("Scenario.files must be between 1 and 5 (AMC gives at most 5 URLs)")
        if self.rows is not None and self.rows < 0:
            raise ValueError("Scenario.rows must be >= 0")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scenario:
        return _from_known_fields(cls, data, "scenario")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.result_files is not None:
            data["result_files"] = [str(p) for p in self.result_files]
        if self.columns is not None:
            data["columns"] = [list(c) if isinstance(c, tuple) else c for c in self.columns]
        return data


@dataclass
class Fault:
    """An injected failure. `times` = next N matching requests; `probability` = random share (seedable).

    With neither set the fault applies to every matching request until cleared.
    """

    kind: str = "throttle"
    endpoint: str = "*"
    times: int | None = None
    probability: float | None = None
    retry_after: int = 1
    delay_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {', '.join(FAULT_KINDS)}")
        if self.endpoint != "*" and self.endpoint not in ENDPOINTS:
            raise ValueError(f"unknown fault endpoint {self.endpoint!r}; expected '*' or one of {ENDPOINTS}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        return _from_known_fields(cls, data, "fault")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _default_instances() -> dict[str, tuple[str, str]]:
    return {"amcdemo001": ("ENTITY1AA1AA11AAA1", "ATVPDKIKX0DER")}


def _instances_from(value: dict[str, Any] | None) -> dict[str, tuple[str, str]]:
    """Instances as {id: [adv, mkt]} or {id: {advertiser_id, marketplace_id}}."""
    instances: dict[str, tuple[str, str]] = {}
    for iid, item in (value or {}).items():
        if isinstance(item, dict):
            instances[iid] = (str(item["advertiser_id"]), str(item["marketplace_id"]))
        else:
            adv, mkt = item
            instances[iid] = (str(adv), str(mkt))
    return instances


@dataclass
class SimulatedAccount:
    """Another Amazon Ads account beside the primary one (SimulatorConfig's own credentials): its own
    Login-with-Amazon credentials, its instances, and its limit on executions in parallel."""

    client_id: str
    client_secret: str
    refresh_token: str
    instances: dict[str, tuple[str, str]] = field(default_factory=dict)
    max_active_executions: int = 200

    def __repr__(self) -> str:  # secrets never in reprs
        return f"SimulatedAccount(client_id={self.client_id!r}, instances={list(self.instances)!r})"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimulatedAccount:
        data = dict(data)
        data["instances"] = _instances_from(data.get("instances"))
        return _from_known_fields(cls, data, "account")


@dataclass
class SimulatorConfig:
    """The simulated account: credentials, instances, timings, quotas and scenarios."""

    client_id: str = "sim-client-id"
    client_secret: str = "sim-client-secret"
    refresh_token: str = "sim-refresh-token"
    token_ttl_seconds: float = 3600
    instances: dict[str, tuple[str, str]] = field(default_factory=_default_instances)
    pending_seconds: float = 2.0
    running_seconds: float = 3.0
    publishing_seconds: float = 0.0
    url_ttl_seconds: float = 600
    daily_quota: int = 30
    latency_seconds: float = 0.0
    scenarios: dict[str, Scenario] = field(default_factory=dict)
    #: Extension: initial faults and the seed for probabilistic faults.
    faults: list[Fault] = field(default_factory=list)
    seed: int | None = None
    #: The primary account's limit on executions in parallel across its instances (AMC: 200).
    max_active_executions: int = 200
    #: More accounts, each with its own credentials and instances.
    accounts: list[SimulatedAccount] = field(default_factory=list)

    def __repr__(self) -> str:  # secrets never in reprs
        return (
            f"SimulatorConfig(client_id={self.client_id!r}, instances={list(self.instances)!r}, "
            f"pending_seconds={self.pending_seconds}, running_seconds={self.running_seconds}, "
            f"scenarios={list(self.scenarios)!r})"
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SimulatorConfig:
        """Build from a JSON/YAML mapping; instances as [adv, mkt] or {advertiser_id, marketplace_id}."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown simulator config field(s): {', '.join(sorted(unknown))}")
        if "instances" in data:
            data["instances"] = _instances_from(data["instances"])
        if "accounts" in data:
            data["accounts"] = [a if isinstance(a, SimulatedAccount) else SimulatedAccount.from_dict(a)
                                for a in data["accounts"] or []]
        if "scenarios" in data:
            data["scenarios"] = {
                key: value if isinstance(value, Scenario) else Scenario.from_dict(value)
                for key, value in (data["scenarios"] or {}).items()
            }
        if "faults" in data:
            data["faults"] = [f if isinstance(f, Fault) else Fault.from_dict(f) for f in data["faults"] or []]
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> SimulatorConfig:
        """Load a JSON or YAML file (YAML needs pyyaml, a project dependency)."""
        text = Path(path).read_text(encoding="utf-8")
        if str(path).endswith((".yaml", ".yml")):
            import yaml

            return cls.from_dict(yaml.safe_load(text))
        import json

        return cls.from_dict(json.loads(text))
