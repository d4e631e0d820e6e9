"""Saved workflows and AMC schedules as code: what the YAML wants, what AMC has, and the plan between.

Why a plan first: a saved workflow is shared state at AMC (schedules and audiences run it), so a
change must be visible before it is made: `amc-pipeline sync --dry-run` prints the plan (create /
update / unchanged, with a SQL diff) and `amc-pipeline sync` applies exactly that. Nothing is ever
deleted here: a workflow removed from the YAML stays at AMC until someone deletes it on purpose.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Literal

from amc_pipeline.amc.client import AmcClient
from amc_pipeline.amc.workflows_api import AmcScheduleRecord, SavedWorkflow
from amc_pipeline.config import PipelineConfig, WorkflowConfig
from amc_pipeline.config_schedule import WEEKDAYS
from amc_pipeline.templating import is_template

log = logging.getLogger(__name__)

Action = Literal["create", "update", "unchanged"]


def desired_workflow(workflow: WorkflowConfig) -> SavedWorkflow:
    """The saved workflow the YAML describes: its SQL and one STRING parameter per parameter_values key.

    A value without placeholders becomes the parameter's default, so AMC's own schedule (which passes
    no values) runs with it; a templated value has no single default and is sent per execution.
    """
    if not workflow.saved_workflow or workflow.sql is None or workflow.workflow_id is None:
        raise ValueError(f"{workflow.name}: not a saved workflow kept here (needs sql and saved_workflow: true)")
    params = []
    for name, value in sorted(workflow.parameter_values.items()):
        param = {"name": name, "dataType": "STRING", "columnType": "DIMENSION"}
        if not is_template(value):
            param["defaultValue"] = value
        params.append(param)
    return SavedWorkflow(workflow.workflow_id, workflow.sql.strip(), tuple(params))


def desired_schedule(workflow: WorkflowConfig) -> AmcScheduleRecord | None:
    """The AMC schedule the YAML describes for a saved workflow, or None without `amc_schedule`."""
    schedule = workflow.amc_schedule
    if schedule is None or workflow.workflow_id is None:
        return None
    return AmcScheduleRecord(
        schedule_id=schedule.schedule_id or f"{workflow.workflow_id}-schedule",
        workflow_id=workflow.workflow_id,
        period=schedule.period.capitalize(),
        hour_utc=schedule.hour_utc,
        start_day=schedule.start_day,
        enabled=schedule.enabled,
    )


def schedule_warning(workflow: WorkflowConfig) -> str | None:
    """Why the AMC schedule's runs would match no partition (so adoption would refuse them), or None.

    A run at `hour_utc` covers the period ending then, in UTC: it is a partition only if the
    workflow's windows (in its time zone) start at that UTC hour, e.g. hour 0 for a UTC workflow.
    """
    schedule = workflow.amc_schedule
    if schedule is None:
        return None
    from amc_pipeline.partitions import partition_for_window  # Dagster: only when a schedule is checked

    days = 7 if schedule.period == "weekly" else 1
    first = datetime.combine(workflow.start_date, time(schedule.hour_utc), UTC) + timedelta(days=14)
    if schedule.start_day is not None:
        first += timedelta(days=(WEEKDAYS.index(schedule.start_day) - first.weekday()) % 7)
    if partition_for_window(workflow, first - timedelta(days=days), first, workflow.instance_ids[0]) is None:
        return (f"{workflow.name}: the schedule's runs (ending {schedule.start_day or 'daily'} at "
                f"{schedule.hour_utc:02d}:00 UTC) match no {workflow.partitions} partition in {workflow.timezone}; "
                f"the monitor would refuse them")
    return None


def code_version(workflow: WorkflowConfig) -> str | None:
    """What the asset's Dagster code version is: a digest of the SQL and parameters (None without SQL).

    Dagster marks landed partitions stale when it changes, which is exactly when their data would
    differ from a new run's.
    """
    if workflow.sql is None:
        return None
    text = json.dumps({"sql": workflow.sql.strip(), "parameters": workflow.parameter_values}, sort_keys=True)
    return "sql-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _param_view(params: tuple[dict, ...]) -> list[dict]:
    keys = ("name", "dataType", "columnType", "defaultValue")
    return sorted(({k: p[k] for k in keys if k in p} for p in params), key=lambda p: str(p.get("name")))


@dataclass(frozen=True)
class PlanItem:
    """One object at AMC and what sync does to it."""

    workflow: str  # the configured workflow's name
    instance_id: str
    kind: Literal["workflow", "schedule"]
    amc_id: str  # workflowId or scheduleId
    action: Action
    diff: str  # unified diff of what changes ("" when unchanged)
    desired: SavedWorkflow | AmcScheduleRecord

    def line(self) -> str:
        return f"{self.action:<9} {self.kind} {self.amc_id} on {self.instance_id} (workflow {self.workflow})"


def _diff(before: str, after: str, label: str) -> str:
    lines = difflib.unified_diff(before.splitlines(), after.splitlines(), f"amc:{label}", f"yaml:{label}",
                                 lineterm="")
    return "\n".join(lines)


def _workflow_item(client: AmcClient, config: PipelineConfig, workflow: WorkflowConfig, instance_id: str) -> PlanItem:
    want = desired_workflow(workflow)
    have = client.get_workflow(config.instance(instance_id), want.workflow_id)
    if have is None:
        action: Action = "create"
        diff = _diff("", want.sql, want.workflow_id)
    else:
        same_sql = have.sql.strip() == want.sql
        same_params = _param_view(have.input_parameters) == _param_view(want.input_parameters)
        action = "unchanged" if same_sql and same_params else "update"
        diff = "" if action == "unchanged" else _diff(have.sql.strip(), want.sql, want.workflow_id)
        if not same_params:
            diff += "\n" + _diff(json.dumps(_param_view(have.input_parameters), indent=1),
                                 json.dumps(_param_view(want.input_parameters), indent=1),
                                 f"{want.workflow_id}.inputParameters")
    return PlanItem(workflow.name, instance_id, "workflow", want.workflow_id, action, diff.strip("\n"), want)


def plan(client: AmcClient, config: PipelineConfig) -> list[PlanItem]:
    """What sync would do for every saved workflow (and its schedule) in the config; reads only."""
    items: list[PlanItem] = []
    schedules: dict[str, dict[str, AmcScheduleRecord]] = {}
    for workflow in config.workflows:
        if not workflow.saved_workflow:
            continue
        for instance_id in workflow.instance_ids:  # AMC keeps saved workflows per instance
            items.extend(_instance_items(client, config, workflow, instance_id, schedules))
    return items


def _instance_items(client: AmcClient, config: PipelineConfig, workflow: WorkflowConfig, instance_id: str,
                    schedules: dict[str, dict[str, AmcScheduleRecord]]) -> list[PlanItem]:
    items = [_workflow_item(client, config, workflow, instance_id)]
    want = desired_schedule(workflow)
    if want is None:
        return items
    if instance_id not in schedules:
        schedules[instance_id] = {s.schedule_id: s for s in client.list_schedules(config.instance(instance_id))}
    have = schedules[instance_id].get(want.schedule_id)
    if have is None:
        action: Action = "create"
    else:
        action = "unchanged" if have.same_settings(want) else "update"
    diff = "" if action == "unchanged" else _diff(
        json.dumps(have.settings() if have else {}, indent=1, sort_keys=True),
        json.dumps(want.settings(), indent=1, sort_keys=True), want.schedule_id)
    warning = schedule_warning(workflow)
    if warning:
        diff = (diff + "\n" if diff else "") + "warning: " + warning
    items.append(PlanItem(workflow.name, instance_id, "schedule", want.schedule_id, action, diff, want))
    return items


def apply(client: AmcClient, config: PipelineConfig, items: list[PlanItem]) -> list[PlanItem]:
    """Make each planned create/update at AMC (workflows before the schedules that run them)."""
    done = []
    for item in sorted(items, key=lambda i: i.kind != "workflow"):
        if item.action == "unchanged":
            continue
        instance = config.instance(item.instance_id)
        if isinstance(item.desired, SavedWorkflow):
            client.save_workflow(instance, item.desired, create=item.action == "create")
        else:
            client.save_schedule(instance, item.desired, create=item.action == "create")
        log.info("sync: %s", item.line())
        done.append(item)
    return done


def render(items: list[PlanItem]) -> str:
    """The plan as the CLI prints it: one line per object, the diff under each change."""
    if not items:
        return "no saved workflows in the config (saved_workflow: true): nothing to sync"
    out = []
    for item in items:
        out.append(item.line())
        if item.diff:
            out.extend("    " + line for line in item.diff.splitlines())
    counts = {a: sum(1 for i in items if i.action == a) for a in ("create", "update", "unchanged")}
    out.append(", ".join(f"{n} {a}" for a, n in counts.items()))
    return "\n".join(out)
