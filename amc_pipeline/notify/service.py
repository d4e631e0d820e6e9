"""One notification pass: record new events per target, record recoveries, deliver what is due.

Why a pass and not a run: the sensor calls this every `sensor_interval_seconds` in the tick itself,
bounded by `notifications.tick_budget_seconds` (short HTTP timeouts), so an idle system launches no
run and a dead endpoint costs one short timeout per tick. Nothing here raises into polling or landing:
it runs apart from them, and a delivery failure is recorded (scrubbed of the URL) and retried with
backoff, shown by `health/status.monitor_health` as "notifications to <target> failing: <error>".

Exactly one message per event per target: the store records each (target, event) once; a row is
claimed with a compare-and-set before the POST and marked sent after it. The one window left is a
sender dying between the endpoint's 2xx and the write of `sent_at`: the row is retried after its
lease, so delivery is at-least-once there; the `Idempotency-Key` header (and `event_key` in the
webhook body) lets a receiver drop that duplicate.
"""

import hashlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from amc_pipeline.config import NotificationsConfig, NotificationTargetConfig, PipelineConfig
from amc_pipeline.notify.delivery import post_json
from amc_pipeline.notify.events import WINDOW_PROBLEMS, Event, Snapshot, problem_slug, snapshot
from amc_pipeline.notify.messages import body_for
from amc_pipeline.store.notifications import Notification
from amc_pipeline.store.states import SUCCESS
from amc_pipeline.store.store import ExecutionStore

#: Tries of one message within a pass (the second after a short backoff) before it waits for a later pass.
TRIES_PER_PASS = 2
#: At most this many due rows per target per pass (the rest wait for the next tick).
BATCH = 50

Poster = Callable[..., str | None]


@dataclass
class PassReport:
    """What one pass did, by target (names only: no URL, no secret)."""

    recorded: dict[str, int] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)
    failing: dict[str, str] = field(default_factory=dict)
    deferred: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"recorded {sum(self.recorded.values())}", f"sent {sum(self.sent.values())}"]
        if self.sent:
            parts.append("(" + ", ".join(f"{t}: {n}" for t, n in sorted(self.sent.items())) + ")")
        if self.failing:
            parts.append("failing: " + "; ".join(f"{t}: {e}" for t, e in sorted(self.failing.items())))
        if self.deferred:
            parts.append(f"{self.deferred} deferred to the next tick")
        if self.errors:
            parts.append("errors: " + "; ".join(self.errors))
        return ", ".join(parts)


def backoff_seconds(config: NotificationsConfig, attempts: int) -> float:
    """Wait before try `attempts + 1`: retry_base_seconds·2^(attempts-1), at most retry_max_seconds."""
    return min(config.retry_max_seconds, config.retry_base_seconds * 2 ** max(0, attempts - 1))


def wants(target: NotificationTargetConfig, event: Event) -> bool:
    if event.kind not in target.events:
        return False
    return target.workflows is None or event.workflow is None or event.workflow in target.workflows


def notify_pass(store: ExecutionStore, config: PipelineConfig, *, now: datetime | None = None,
                env: Mapping[str, str] | None = None, post: Poster = post_json,
                budget_seconds: float | None = None) -> PassReport:
    """Run one pass for every configured target; never raises (problems are in the report)."""
    report = PassReport()
    notifications = config.notifications
    if notifications is None or not notifications.targets:
        return report
    started = time.monotonic()
    deadline = started + (budget_seconds if budget_seconds is not None else notifications.tick_budget_seconds)
    now = now or datetime.now(UTC)
    env = os.environ if env is None else env
    try:
        snap = snapshot(store, config, now)
    except Exception as exc:  # the store unreachable: nothing to decide this tick
        report.errors.append(f"reading the store: {type(exc).__name__}: {exc}")
        return report
    for target in notifications.targets:
        try:
            report.recorded[target.name] = _record(store, target, snap, now)
        except Exception as exc:
            report.errors.append(f"{target.name}: recording: {type(exc).__name__}: {exc}")
    for target in notifications.targets:
        try:
            _deliver(store, notifications, target, env, post, now, deadline, report)
        except Exception as exc:
            report.errors.append(f"{target.name}: delivering: {type(exc).__name__}: {exc}")
    return report


# ------------------------------------------------------------------------------------------- recording


def _record(store: ExecutionStore, target: NotificationTargetConfig, snap: Snapshot, now: datetime) -> int:
    events = [e for e in snap.problems if wants(target, e)]
    own = f"notifications to {target.name} failing"
    problems = [p for p in snap.health_problems if not p.startswith(own)]
    open_health = store.open_notifications(target.name, ["unhealthy"])
    if "unhealthy" in target.events:
        open_slugs = {_slug_of(row) for row in open_health}
        for problem in problems:
            slug = problem_slug(problem)
            if slug in open_slugs:
                continue
            episode = len(store.notification_keys(target.name, f"unhealthy:{slug}:")) + 1
            events.append(Event(kind="unhealthy", key=f"unhealthy:{slug}:{episode}", detail=problem))
            open_slugs.add(slug)
    added = len(store.add_notifications(target.name, [e.record() for e in events], now=now))
    added += _record_recoveries(store, target, snap, problems, open_health, now)
    return added


def _slug_of(row: Notification) -> str:
    return row.event_key.split(":")[1] if row.event_key.count(":") >= 2 else row.event_key


def _record_recoveries(store: ExecutionStore, target: NotificationTargetConfig, snap: Snapshot,
                       problems: list[str], open_health: list[Notification], now: datetime) -> int:
    """Resolve what the target was told about and is over; record `recovered` if it asked for it.

    A window recovers when its live execution has SUCCEEDED and landed (after failed or landing_failed),
    or, if it was only stuck, when it is neither stuck nor failed any more. A monitor problem recovers
    when that kind of problem is gone. Only problems already sent count (the target must have heard of
    them); resolution happens whether or not the target wants `recovered`, so a later episode of the
    same problem is a new event.
    """
    added = 0
    announce = "recovered" in target.events
    current = {problem_slug(p) for p in problems}
    for row in open_health:
        if row.sent_at is None or _slug_of(row) in current:
            continue
        recovered = Event(kind="recovered", key=f"recovered:{row.event_key}", detail=row.data().get("detail"))
        if store.resolve_notifications(target.name, [row.id], recovered=recovered.record() if announce else None,
                                       now=now):
            added += announce
    by_window: dict[tuple[str, str], list[Notification]] = {}
    for row in store.open_notifications(target.name, WINDOW_PROBLEMS):
        if row.sent_at is not None and row.workflow and row.partition_key:
            by_window.setdefault((row.workflow, row.partition_key), []).append(row)
    for (workflow, key), rows in by_window.items():
        view = store.get_live(workflow, key)
        if view is None or view.attempt is None:
            continue
        only_stuck = all(r.kind == "stuck" for r in rows)
        if view.status == SUCCESS and view.landed:
            detail = f"SUCCESS, landed {view.rows} rows" if view.rows is not None else "SUCCESS, landed"
        elif only_stuck and (workflow, key) not in snap.stuck_windows and (workflow, key) not in snap.failed_windows:
            detail = f"no longer stuck (now {view.status})"
        else:
            continue
        latest = rows[-1]
        recovered = Event(kind="recovered", key=f"recovered:{latest.event_key}", workflow=workflow,
                          partition_key=key, window_start=view.window_start.isoformat(),
                          window_end=view.window_end.isoformat(), status=view.status,
                          attempts=view.attempt.attempt, amc_execution_id=view.attempt.amc_execution_id,
                          detail=detail)
        if store.resolve_notifications(target.name, [r.id for r in rows],
                                       recovered=recovered.record() if announce else None, now=now):
            added += announce
    return added


# ------------------------------------------------------------------------------------------- delivery


def _deliver(store: ExecutionStore, notifications: NotificationsConfig, target: NotificationTargetConfig,
             env: Mapping[str, str], post: Poster, now: datetime, deadline: float, report: PassReport) -> None:
    rows = store.pending_notifications(target.name, now=now, limit=BATCH)
    if not rows:
        return
    url = env.get(target.url_env)
    lease = timedelta(seconds=notifications.tick_budget_seconds + 60)
    for index, row in enumerate(rows):
        need = target.timeout_seconds * TRIES_PER_PASS + 0.5
        if time.monotonic() + need > deadline:
            report.deferred += len(rows) - index
            return
        if not store.claim_notification(row.id, attempts=row.attempts, lease_until=now + lease, now=now):
            continue  # another evaluation has it
        if not url:
            error = f"environment variable {target.url_env} is not set"
        else:
            data = {**row.data(), "kind": row.kind, "event_key": row.event_key,
                    "first_seen": row.first_seen_at.isoformat()}
            idempotency = hashlib.sha256(f"{target.name}\n{row.event_key}".encode()).hexdigest()[:32]
            error = post(url, body_for(target.kind, data, notifications.dagster_ui_url),
                         headers={"Idempotency-Key": idempotency}, timeout=target.timeout_seconds,
                         tries=TRIES_PER_PASS, deadline=deadline)
        if error is None:
            store.record_notification_sent(row.id, now=datetime.now(UTC))
            report.sent[target.name] = report.sent.get(target.name, 0) + 1
            continue
        retry_at = datetime.now(UTC) + timedelta(seconds=backoff_seconds(notifications, row.attempts + 1))
        store.record_notification_failure(row.id, error=error, next_try_at=retry_at)
        report.failing[target.name] = error
        # One failure is enough evidence for this tick: the rest wait, so a dead endpoint costs one try.
        report.deferred += len(rows) - index - 1
        return

