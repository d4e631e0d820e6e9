"""Time-window partitions of a workflow, and the AMC window each partition key stands for.

Why here and not in the asset module: the monitor (which submits executions) and the assets (which
request and land them) must agree exactly on the window of a partition key, in the workflow's time zone.
Dagster is imported outside `defs/` for that reason: its partitions definition is the one source of
truth for which keys exist and what window each covers, so the engine asks it rather than re-deriving it.
"""

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from amc_pipeline.config import WorkflowConfig
from amc_pipeline.partition_keys import INSTANCE_DIMENSION, TIME_DIMENSION, fan_out_key, split_key

_PERIOD_DAYS = {"daily": 1, "weekly": 7, "monthly": 28}


def partitions_def(workflow: WorkflowConfig) -> dg.PartitionsDefinition:
    """The workflow's windows; for a workflow on several instances, window x instance.

    Why a MultiPartitionsDefinition for fan-out (README "Many advertisers"): one asset per workflow
    keeps one dataset, one node in the graph and one backfill action across every instance, while
    each (window, instance) keeps its own execution, status, metadata and check results.
    """
    windows = time_partitions_def(workflow)
    if not workflow.fan_out:
        return windows
    return dg.MultiPartitionsDefinition({
        TIME_DIMENSION: windows,
        INSTANCE_DIMENSION: dg.StaticPartitionsDefinition(list(workflow.instance_ids)),
    })


def time_partitions_def(workflow: WorkflowConfig) -> dg.TimeWindowPartitionsDefinition:
    """Daily, weekly (Monday-based) or monthly windows from `start_date` in the workflow's time zone.

    The newest windows are held back by `data_lag_days`, since AMC's data lags: exactly for daily
    windows, rounded up to whole windows for weekly and monthly ones.
    """
    end_offset = -math.ceil(workflow.data_lag_days / _PERIOD_DAYS[workflow.partitions])
    start = workflow.start_date.isoformat()
    end = workflow.end_date.isoformat() if workflow.end_date else None
    common = {"start_date": start, "end_date": end, "timezone": workflow.timezone, "end_offset": end_offset}
    if workflow.partitions == "daily":
        return dg.DailyPartitionsDefinition(**common)
    if workflow.partitions == "weekly":
        return dg.WeeklyPartitionsDefinition(day_offset=1, **common)
    return dg.MonthlyPartitionsDefinition(**common)


@dataclass(frozen=True)
class Window:
    """A partition's window: local wall times (what AMC gets, with the zone name) and UTC bounds."""

    partition_key: str
    start_local: datetime
    end_local: datetime
    timezone: str
    #: The instance the window runs on (a fanned-out workflow's key names it).
    instance_id: str = ""

    @property
    def start_utc(self) -> datetime:
        return self.start_local.astimezone(UTC)

    @property
    def end_utc(self) -> datetime:
        return self.end_local.astimezone(UTC)


def window_for(workflow: WorkflowConfig, partition_key: str) -> Window:
    """The window (and instance) a partition key covers; raises ValueError for a key outside the
    workflow's range or naming an instance the workflow does not run on."""
    window_key, instance_id = split_key(partition_key)
    if workflow.fan_out:
        if instance_id is None:
            example = fan_out_key(workflow.start_date.isoformat(), workflow.instance_ids[0])
            raise ValueError(f"{workflow.name}: {partition_key!r} names no instance; expected "
                             f"<window>|<instance>, e.g. {example!r}")
        if instance_id not in workflow.instance_ids:
            raise ValueError(f"{workflow.name}: {partition_key!r}: the workflow does not run on "
                             f"instance {instance_id!r}")
    elif instance_id is not None:
        raise ValueError(f"{workflow.name}: {partition_key!r} is not a {workflow.partitions} partition key "
                         f"(the workflow runs on one instance, {workflow.instance_id})")
    pdef = time_partitions_def(workflow)
    try:
        time_window = pdef.time_window_for_partition_key(window_key)
    except Exception as exc:  # Dagster raises several types for unparseable keys
        raise ValueError(f"{workflow.name}: {partition_key!r} is not a {workflow.partitions} partition key") from exc
    first = pdef.get_first_partition_key()
    if first is None or window_key < first or (workflow.end_date and time_window.start.date() > workflow.end_date):
        raise ValueError(f"{workflow.name}: partition {partition_key!r} is outside the workflow's range")
    zone = ZoneInfo(workflow.timezone)
    return Window(
        partition_key=partition_key,
        start_local=time_window.start.astimezone(zone),
        end_local=time_window.end.astimezone(zone),
        timezone=workflow.timezone,
        instance_id=instance_id or workflow.instance_ids[0],
    )


def partition_key_for(workflow: WorkflowConfig, window_key: str, instance_id: str) -> str:
    """The partition key of `window_key` on `instance_id` in this workflow's partitioning."""
    return fan_out_key(window_key, instance_id) if workflow.fan_out else window_key


def partition_for_window(workflow: WorkflowConfig, start: datetime, end: datetime,
                         instance_id: str | None = None) -> str | None:
    """The partition key whose window is exactly [start, end) (on `instance_id`, for a fanned-out
    workflow), or None when no partition has it.

    `start`/`end` are aware (any zone) or naive wall times in the workflow's zone, as AMC echoes them
    in `timeWindowStartOriginal`. Keys held back by `data_lag_days` count as partitions here (AMC may
    run a window before Dagster offers it); the caller decides whether to wait for it.
    """
    zone = ZoneInfo(workflow.timezone)
    start = start.replace(tzinfo=zone) if start.tzinfo is None else start.astimezone(zone)
    end = end.replace(tzinfo=zone) if end.tzinfo is None else end.astimezone(zone)
    unlagged = workflow.model_copy(update={"data_lag_days": 0, "end_date": None})
    pdef = time_partitions_def(unlagged)
    if workflow.fan_out and instance_id not in workflow.instance_ids:
        return None
    try:
        key = partition_key_for(unlagged, pdef.get_partition_key_for_timestamp(start.timestamp()),
                                instance_id or workflow.instance_ids[0])
        window = window_for(unlagged, key)
    except Exception:  # before start_date, or a timestamp Dagster cannot place
        return None
    if window.start_utc != start.astimezone(UTC) or window.end_utc != end.astimezone(UTC):
        return None
    if workflow.end_date is not None and window.start_local.date() > workflow.end_date:
        return None
    return key


def is_current_partition(workflow: WorkflowConfig, partition_key: str) -> bool:
    """True when Dagster offers `partition_key` now (not held back by `data_lag_days`)."""
    return partitions_def(workflow).has_partition_key(partition_key)


def utc_day_start(now: datetime) -> datetime:
    """Start of the UTC day of `now`: AMC's daily execution quota counts per UTC day."""
    now = now.astimezone(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def next_utc_day(now: datetime) -> datetime:
    return utc_day_start(now) + timedelta(days=1)
