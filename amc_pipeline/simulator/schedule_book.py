"""The simulator's AMC schedules: CRUD, persistence, and the runs that fall due on the simulator clock.

A mixin of `SimulatorState` (it uses the state's lock, clock, database, saved workflows and
`create_execution`), kept apart so each part of the state stays readable.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from amc_pipeline.simulator.timefmt import iso_z

#: Cap on the runs one schedule starts in one catch-up (a clock moved by years must not hang a request).
MAX_CATCH_UP_RUNS = 400
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def schedule_runs(schedule: dict[str, Any], after: float, now: float) -> list[float]:
    """A schedule's run times in (after, now]: every day (or every `aggregationStartDay`) at
    `aggregationHourUtc`:00 UTC. Each run covers the period that ends at its run time."""
    hour = int(schedule.get("aggregationHourUtc") or 0)
    weekly = schedule.get("aggregationPeriod") == "Weekly"
    first = datetime.fromtimestamp(after, UTC).replace(hour=hour, minute=0, second=0, microsecond=0)
    if weekly:
        want = WEEKDAYS.index(schedule.get("aggregationStartDay") or WEEKDAYS[first.weekday()])
        first += timedelta(days=(want - first.weekday()) % 7)
    step = timedelta(days=7 if weekly else 1)
    while first.timestamp() <= after:
        first += step
    runs = []
    while first.timestamp() <= now and len(runs) < MAX_CATCH_UP_RUNS:
        runs.append(first.timestamp())
        first += step
    return runs


class ScheduleBook:
    """Schedules per instance (`self.schedules`), and the scheduled executions they start."""

    def get_schedule(self, instance: str, schedule_id: str) -> dict[str, Any] | None:
        with self.lock:
            found = self.schedules.get(instance, {}).get(schedule_id)
            return copy.deepcopy(found["public"]) if found is not None else None

    def list_schedules(self, instance: str) -> list[dict[str, Any]]:
        with self.lock:
            return [copy.deepcopy(s["public"]) for s in self.schedules.get(instance, {}).values()]

    def put_schedule(self, instance: str, public: dict[str, Any]) -> None:
        """Create or replace a schedule; its runs start at the next boundary after now."""
        with self.lock:
            existing = self.schedules.get(instance, {}).get(public["scheduleId"])
            entry = {"public": copy.deepcopy(public), "anchor": self.now(),
                     "last_run": existing["last_run"] if existing else None}
            self.schedules.setdefault(instance, {})[public["scheduleId"]] = entry
            self._save_schedule(instance, public["scheduleId"], entry)

    def delete_schedule(self, instance: str, schedule_id: str) -> bool:
        with self.lock:
            found = self.schedules.get(instance, {}).pop(schedule_id, None)
            self._save_schedule(instance, schedule_id, None)
            return found is not None

    def _save_schedule(self, instance: str, schedule_id: str, entry: dict[str, Any] | None) -> None:
        if self.db is None:
            return
        if entry is None:
            self.db.execute("DELETE FROM schedules WHERE instance = ? AND schedule_id = ?", (instance, schedule_id))
        else:
            self.db.execute("INSERT OR REPLACE INTO schedules (instance, schedule_id, data) VALUES (?, ?, ?)",
                            (instance, schedule_id, json.dumps(entry)))

    def run_schedules(self) -> int:
        """Start every scheduled execution that fell due on the simulator clock; returns how many.

        Called before executions are read, so runs appear on their cadence with no background task
        (and when a test moves the clock, all runs in between appear, each created at its own time).
        """
        created = 0
        with self.lock:
            now = self.now()
            for instance, entries in self.schedules.items():
                for schedule_id, entry in entries.items():
                    public = entry["public"]
                    if not public.get("scheduleEnabled", True):
                        continue
                    after = max(entry["anchor"], entry["last_run"] or entry["anchor"])
                    runs = schedule_runs(public, after, now)
                    for run_at in runs:
                        self._scheduled_execution(instance, public, run_at)
                        entry["last_run"] = run_at
                    if runs:
                        created += len(runs)
                        self._save_schedule(instance, schedule_id, entry)
        return created

    def _scheduled_execution(self, instance: str, schedule: dict[str, Any], run_at: float) -> None:
        days = 7 if schedule.get("aggregationPeriod") == "Weekly" else 1
        start, end = run_at - days * 86400, run_at
        saved = self.get_workflow(instance, schedule["workflowId"]) or {}
        local = "%Y-%m-%dT%H:%M:%S"
        fields = {
            "workflowId": schedule["workflowId"],
            "workflowExecutionTimeoutSeconds": 21600,
            "parameterValues": {},
            "ignoreDataGaps": False,
            "disableAggregationControls": bool(schedule.get("disableAggregationControls", False)),
            "timeWindowStart": iso_z(start),
            "timeWindowEnd": iso_z(end),
            "timeWindowStartOriginal": datetime.fromtimestamp(start, UTC).strftime(local),
            "timeWindowEndOriginal": datetime.fromtimestamp(end, UTC).strftime(local),
            "timeWindowTimeZoneOriginal": "UTC",
        }
        self.create_execution(instance, fields, saved.get("sqlQuery"), at=run_at, category="SCHEDULED")
