"""What is stuck, what failed, and whether the monitor and AMC are healthy: computed from the store.

Shared by the asset checks (what the UI shows), `amc-pipeline doctor` (the terminal) and the metrics
asset, so all three tell the same story.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from amc_pipeline.amc.client import AmcClient
from amc_pipeline.amc.errors import AmcAuthError, AmcError
from amc_pipeline.config import PipelineConfig, WorkflowConfig
from amc_pipeline.store.states import ACTIVE, CANCELLED, FAILED, PENDING, SUCCESS, TIMEOUT
from amc_pipeline.store.store import ExecutionStore

#: A window whose current attempt ended in one of these failed for good (nothing retries it by itself).
FINAL_FAILURES = (FAILED, TIMEOUT, CANCELLED)
STALE_AFTER = timedelta(minutes=5)


@dataclass(frozen=True)
class StuckExecution:
    workflow: str
    partition_key: str
    status: str
    amc_execution_id: str | None
    age_minutes: float
    limit_minutes: int
    instance_id: str = ""


@dataclass(frozen=True)
class FailedExecution:
    workflow: str
    partition_key: str
    status: str
    error_type: str | None
    reason: str | None
    attempts: int
    amc_execution_id: str | None
    instance_id: str = ""


def stuck_executions(store: ExecutionStore, workflow: WorkflowConfig, now: datetime | None = None
                     ) -> list[StuckExecution]:
    """PENDING longer than `stuck_pending_minutes`, RUNNING longer than `stuck_running_minutes`."""
    now = now or datetime.now(UTC)
    found = []
    for execution in store.list_executions(workflow=workflow.name, status=tuple(sorted(ACTIVE)), limit=10_000):
        attempt = execution.attempt
        since = attempt.status_changed_at or attempt.submitted_at or execution.requested_at
        age = (now - since).total_seconds() / 60
        limit = workflow.stuck_pending_minutes if attempt.status == PENDING else workflow.stuck_running_minutes
        if age > limit:
            found.append(StuckExecution(workflow.name, execution.partition_key, attempt.status,
                                        attempt.amc_execution_id, round(age, 1), limit, execution.instance_id))
    return sorted(found, key=lambda s: s.partition_key)


def failed_executions(store: ExecutionStore, workflow: WorkflowConfig, *, max_landing_attempts: int = 5
                      ) -> list[FailedExecution]:
    """Windows whose current attempt ended FAILED, TIMEOUT or CANCELLED and will not be retried, and
    windows whose result AMC produced but that could not be landed after `max_landing_attempts`."""
    found = []
    for execution in store.list_executions(workflow=workflow.name, status=SUCCESS, limit=10_000):
        if execution.landed_attempt_id != execution.current_attempt_id and \
                execution.land_attempts >= max_landing_attempts:
            found.append(FailedExecution(workflow.name, execution.partition_key, "LANDING_FAILED", "LANDING",
                                         execution.land_error, execution.land_attempts,
                                         execution.attempt.amc_execution_id, execution.instance_id))
    for execution in store.list_executions(workflow=workflow.name, status=FINAL_FAILURES, limit=10_000):
        attempt = execution.attempt
        found.append(FailedExecution(workflow.name, execution.partition_key, attempt.status, attempt.error_type,
                                     attempt.failure_reason or attempt.last_error, attempt.attempt,
                                     attempt.amc_execution_id, execution.instance_id))
    return sorted(found, key=lambda f: f.partition_key)


@dataclass
class Health:
    healthy: bool
    problems: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


def monitor_health(store: ExecutionStore, config: PipelineConfig, *, now: datetime | None = None,
                   amc_probe: Any = None, error_rate_threshold: float = 0.5) -> Health:
    """Stale poller, unreachable AMC, high error rate. `amc_probe()` returns None or an error text."""
    now = now or datetime.now(UTC)
    health = Health(healthy=True)
    overdue = store.due_for_poll(now - STALE_AFTER)
    beat = store.heartbeat("poll")
    health.facts["overdue_checks"] = len(overdue)
    health.facts["last_successful_poll"] = beat["last_ok_at"].isoformat() if beat and beat["last_ok_at"] else "never"
    if overdue:
        health.problems.append(
            f"poller stale: {len(overdue)} active executions not checked for over "
            f"{int(STALE_AFTER.total_seconds() // 60)} minutes past their due time")
    if beat is not None and not beat["ok"]:
        health.problems.append(f"the last monitor pass could not reach AMC ({beat['detail'] or 'no detail'})")
    if amc_probe is not None:
        problem = amc_probe()
        health.facts["amc_reachable"] = problem is None
        if problem:
            health.problems.append(f"AMC unreachable: {problem}")
    for account in config.accounts:  # after the probe, which records them afresh when it has the store
        account_row = store.heartbeat(account_beat(account.name))
        if account_row is not None and not account_row["ok"]:
            health.problems.append(f"account {account.name}: {account_row['detail'] or 'credentials refused'}")
    recent = store.attempts_since(now - timedelta(hours=24))
    finished = [a for _, a in recent if a.status in (SUCCESS, FAILED, TIMEOUT)]
    errors = [a for a in finished if a.status != SUCCESS]
    rate = len(errors) / len(finished) if finished else 0.0
    health.facts["error_rate_24h"] = round(rate, 3)
    if len(finished) >= 4 and rate > error_rate_threshold:
        health.problems.append(f"error rate {rate:.0%} over the last 24 h ({len(errors)} of {len(finished)})")
    if config.notifications is not None:  # a dead endpoint shows here, never as a crash (notify/service.py)
        failing = store.failing_notification_targets(t.name for t in config.notifications.targets)
        health.problems += [f"notifications to {name} failing: {error}" for name, error in sorted(failing.items())]
    health.healthy = not health.problems
    return health


def account_beat(account: str) -> str:
    """The heartbeat row of an account: whether the last pass that used it had its token accepted."""
    return f"account:{account}"


def amc_probe_for(get_client: Callable[[], AmcClient], config: PipelineConfig,
                  store: ExecutionStore | None = None) -> Callable[[], str | None]:
    """A callable that refreshes each account's token and makes one cheap list call per instance.

    Returns None, or which instances failed and why (with their account). `get_client` is called
    inside the probe, so a configuration problem (a missing variable) is reported as the probe's
    finding instead of failing whoever asked; the client is not closed here (it belongs to its
    caller, e.g. the run's resource). With `store`, each account's heartbeat is recorded from the
    probe, so an account that recovered (or broke) shows without waiting for monitor work.
    """

    def probe() -> str | None:
        try:
            client = get_client()
        except Exception as exc:  # configuration problems (missing env vars) surface here too
            return f"{type(exc).__name__}: {exc}"
        problems: list[str] = []
        refused: dict[str, str] = {}
        for instance in config.instances:
            if instance.account in refused:
                problems.append(f"instance {instance.instance_id} (account {instance.account}): not tried, "
                                f"the account's credentials were refused")
                continue
            try:
                client.list_executions_page(instance, min_creation_time=datetime.now(UTC) - timedelta(hours=1),
                                            limit=1)
            except AmcAuthError as exc:
                refused[instance.account] = str(exc)
                problems.append(f"instance {instance.instance_id} (account {instance.account}): "
                                f"{exc.error_type.value}: {exc.details or exc}")
            except AmcError as exc:
                problems.append(f"instance {instance.instance_id} (account {instance.account}): "
                                f"{exc.error_type.value}: {exc.details or exc}")
            except Exception as exc:  # noqa: BLE001 - a probe reports, never raises
                problems.append(f"instance {instance.instance_id} (account {instance.account}): "
                                f"{type(exc).__name__}: {exc}")
        if store is not None:
            for account in {i.account for i in config.instances}:
                store.record_heartbeat(account_beat(account), ok=account not in refused,
                                       detail=refused.get(account, "credentials accepted"))
        return "; ".join(problems) or None

    return probe


@dataclass(frozen=True)
class Findings:
    """What a workflow's stuck and failed checks are about, read once from the store."""

    failed: list[FailedExecution]
    stuck: list[StuckExecution]

    @property
    def digest(self) -> str:
        """Changes exactly when a check's answer would (not with the ages of stuck executions)."""
        text = repr(([(f.partition_key, f.status, f.error_type, f.reason, f.attempts) for f in self.failed],
                     [(s.partition_key, s.status) for s in self.stuck]))
        return hashlib.sha1(text.encode()).hexdigest()[:16]


def findings(store: ExecutionStore, workflow: WorkflowConfig, config: PipelineConfig, *,
             now: datetime | None = None) -> Findings:
    return Findings(failed_executions(store, workflow, max_landing_attempts=config.monitor.max_landing_attempts),
                    stuck_executions(store, workflow, now))


def health_digest(store: ExecutionStore, config: PipelineConfig, *, now: datetime | None = None) -> str:
    """The kinds of the monitor's health problems (without the AMC probe: a sensor makes no AMC calls).

    Why kinds, not texts: a count of overdue checks moves every pass; the digest changes when the
    poller goes stale or recovers, the last pass fails or succeeds, or the error rate crosses its bound.
    """
    health = monitor_health(store, config, now=now)
    kinds = sorted(" ".join(problem.split()[:2]) for problem in health.problems)
    return hashlib.sha1(repr(kinds).encode()).hexdigest()[:16]
