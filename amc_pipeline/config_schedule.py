"""`amc_schedule:` of a workflow: an AMC schedule (`/schedules`) that runs its saved workflow.

Apart from `config.py` only to keep that module's edits small; `config.WorkflowConfig.amc_schedule`
is where it is used, and errors name the field the same way (`workflows[0].amc_schedule.period: ...`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from amc_pipeline.config_values import one_of

#: AMC's days of the week for a weekly schedule's aggregationStartDay (the YAML takes any case).
WEEKDAYS: tuple[str, ...] = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class AmcScheduleConfig(BaseModel):
    """An AMC schedule (`/schedules`) that runs the saved workflow; docs/amc-modes.md says when to use one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    period: Literal["daily", "weekly"]
    hour_utc: int = Field(default=0, ge=0, le=23)
    start_day: str | None = None
    enabled: bool = True
    #: AMC's scheduleId; default `<workflow_id>-schedule`.
    schedule_id: str | None = None

    @field_validator("period", mode="before")
    @classmethod
    def _period(cls, value: Any) -> Any:
        return one_of(value, ("daily", "weekly"))

    @field_validator("start_day")
    @classmethod
    def _start_day(cls, value: str | None) -> str | None:
        if value is None:
            return None
        for day in WEEKDAYS:
            if value.lower() == day.lower():
                return day
        raise ValueError(f"expected a day of the week ({', '.join(WEEKDAYS)}), got {value!r}")

    @model_validator(mode="after")
    def _weekly_day(self) -> AmcScheduleConfig:
        if self.period == "weekly" and self.start_day is None:
            raise ValueError("start_day: required for a weekly schedule (AMC would pick the day it is created)")
        if self.period == "daily" and self.start_day is not None:
            raise ValueError("start_day: only a weekly schedule has one")
        return self
