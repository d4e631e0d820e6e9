"""What the monitor reports about each status change, independent of Dagster.

The engine functions return `StatusChange`s; the Dagster ops turn each into exactly one
`AssetObservation` on the workflow's asset, so the asset's history tells the execution's story.
"""

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StatusChange:
    workflow: str
    partition_key: str
    execution_id: int
    attempt: int
    from_status: str
    to_status: str
    amc_execution_id: str | None = None
    error_type: str | None = None
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: The same move of the other windows of a pack this attempt leads (docs/packing.md).
    members: tuple["StatusChange", ...] = ()

    def metadata(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "status": self.to_status,
            "previous_status": self.from_status,
            "amc/execution_id": self.amc_execution_id or "",
            "amc/attempt": self.attempt,
            "amc/store_execution_id": self.execution_id,
        }
        if self.error_type:
            data["error_type"] = self.error_type
        if self.reason:
            data["reason"] = self.reason
        data.update(self.extra)
        return data


@dataclass
class PassReport:
    """Figures of one monitor pass, logged by the op and used by the benchmark."""

    submitted: int = 0
    adopted: int = 0
    submit_failed: int = 0
    deferred: int = 0
    checked: int = 0
    list_requests: int = 0
    get_requests: int = 0
    errors: int = 0
    outage: bool = False
    retried: int = 0
    timed_out: int = 0
    changes: list[StatusChange] = field(default_factory=list)
    #: Accounts whose credentials Login with Amazon refused in this pass -> the (secret-free) error.
    refused_accounts: dict[str, str] = field(default_factory=dict)
    #: Accounts this pass made AMC calls for (their heartbeats are recorded from it).
    accounts_seen: set[str] = field(default_factory=set)

    def summary(self) -> str:
        return (
            f"submitted={self.submitted} adopted={self.adopted} submit_failed={self.submit_failed} "
            f"deferred={self.deferred} checked={self.checked} list_requests={self.list_requests} "
            f"get_requests={self.get_requests} errors={self.errors} outage={self.outage} "
            f"retried={self.retried} timed_out={self.timed_out} changes={len(self.changes)}"
            + (f" refused_accounts={','.join(sorted(self.refused_accounts))}" if self.refused_accounts else "")
        )
