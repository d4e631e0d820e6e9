"""What a notification is about, derived from the store through `health/status`.

Each event has a key that names exactly what happened, so recording it twice is impossible (the store's
unique (target, event_key)):

- `failed:<wf>:<window>:<execution>.<attempt>`: the window's current attempt ended FAILED, TIMEOUT or
  CANCELLED and nothing retries it (`failed_executions`). A forced re-run that fails again is a new
  execution, so a new event.
- `landing_failed:<wf>:<window>:<execution>.<attempt>`: AMC produced the result but it could not be
  landed after `max_landing_attempts`.
- `stuck:<wf>:<window>:<execution>.<attempt>:<status>`: PENDING or RUNNING past the workflow's limit
  (`stuck_executions`); stuck PENDING and later stuck RUNNING are two events.
- `unhealthy:<problem>:<n>`: the n-th episode of one kind of monitor problem (`monitor_health`
  without the AMC probe: a sensor makes no AMC calls), e.g. `unhealthy:poller-stale:1`.
- `recovered:<the latest problem key>`: recorded by `service` when what a target was told about is over.
"""

import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from amc_pipeline.config import PipelineConfig
from amc_pipeline.health.status import FINAL_FAILURES, failed_executions, monitor_health, stuck_executions
from amc_pipeline.store.notifications import NewNotification
from amc_pipeline.store.records import ExecutionView
from amc_pipeline.store.store import ExecutionStore

#: Kinds that are about one window and can be followed by `recovered`.
WINDOW_PROBLEMS = ("failed", "landing_failed", "stuck")
LANDING_FAILED = "LANDING_FAILED"


@dataclass(frozen=True)
class Event:
    """One thing a target may be told, with the facts its message shows."""

    kind: str
    key: str
    workflow: str | None = None
    partition_key: str | None = None
    window_start: str | None = None
    window_end: str | None = None
    status: str | None = None
    reason: str | None = None
    error_type: str | None = None
    attempts: int | None = None
    amc_execution_id: str | None = None
    detail: str | None = None

    def record(self) -> NewNotification:
        payload = json.dumps({k: v for k, v in asdict(self).items() if v is not None}, sort_keys=True)
        return NewNotification(event_key=self.key, kind=self.kind, workflow=self.workflow,
                               partition_key=self.partition_key, payload=payload)


@dataclass
class Snapshot:
    """The store's view at one moment: window problems, which windows are failed/stuck, health problems."""

    problems: list[Event]
    failed_windows: set[tuple[str, str]]
    stuck_windows: set[tuple[str, str]]
    health_problems: list[str]


def _window(view: ExecutionView) -> dict[str, str]:
    return {"window_start": view.window_start.isoformat(), "window_end": view.window_end.isoformat()}


def snapshot(store: ExecutionStore, config: PipelineConfig, now: datetime | None = None) -> Snapshot:
    """Every current window problem as an event, and the monitor's problems (no AMC probe)."""
    now = now or datetime.now(UTC)
    problems: list[Event] = []
    failed_windows: set[tuple[str, str]] = set()
    stuck_windows: set[tuple[str, str]] = set()
    for workflow in config.workflows:
        for failure in failed_executions(store, workflow, max_landing_attempts=config.monitor.max_landing_attempts):
            failed_windows.add((workflow.name, failure.partition_key))
            view = store.get_live(workflow.name, failure.partition_key)
            if view is None or view.attempt is None:
                continue
            landing = failure.status == LANDING_FAILED
            if landing != (view.status not in FINAL_FAILURES):
                continue  # the window moved on between the two reads; the next pass sees it settled
            kind = "landing_failed" if landing else "failed"
            problems.append(Event(
                kind=kind, key=f"{kind}:{workflow.name}:{failure.partition_key}:{view.id}.{view.attempt.id}",
                workflow=workflow.name, partition_key=failure.partition_key, **_window(view),
                status=failure.status, reason=failure.reason, error_type=failure.error_type,
                attempts=failure.attempts, amc_execution_id=failure.amc_execution_id,
                detail=(f"AMC produced the result but it could not be landed after {failure.attempts} tries"
                        if landing else None)))
        for stuck in stuck_executions(store, workflow, now):
            stuck_windows.add((workflow.name, stuck.partition_key))
            view = store.get_live(workflow.name, stuck.partition_key)
            if view is None or view.attempt is None or view.status != stuck.status:
                continue
            problems.append(Event(
                kind="stuck", key=f"stuck:{workflow.name}:{stuck.partition_key}:{view.id}.{view.attempt.id}:"
                                  f"{stuck.status}",
                workflow=workflow.name, partition_key=stuck.partition_key, **_window(view), status=stuck.status,
                attempts=view.attempt.attempt, amc_execution_id=stuck.amc_execution_id,
                detail=f"{stuck.status} for {stuck.age_minutes:g} min (limit {stuck.limit_minutes} min)"))
    health = monitor_health(store, config, now=now)
    return Snapshot(problems, failed_windows, stuck_windows, list(health.problems))


def problem_slug(problem: str) -> str:
    """A monitor problem's kind, stable while its figures move: the words before the first figure, ':'
    or '(' (`poller-stale`, `error-rate`, `notifications-to-slack-failing`)."""
    words = []
    for word in problem.split()[:6]:
        if any(c.isdigit() for c in word) or word.startswith("("):
            break
        words.append(word.rstrip(":"))
        if word.endswith(":"):
            break
    return re.sub(r"[^a-z0-9]+", "-", " ".join(words).lower()).strip("-") or "problem"
