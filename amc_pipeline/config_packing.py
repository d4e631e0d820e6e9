"""The `packing:` block of a workflow: several contiguous windows in one AMC execution.

Why a module of its own: packing is opt-in per workflow and its rules (docs/packing.md) are read by the
submitter and by the landing; keeping the model here leaves `config.py` one field to carry it.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: AMC output column names as SQL identifiers (what a `GROUP BY` column comes back as).
COLUMN_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class PackingConfig(BaseModel):
    """`packing: {max_windows: 31, split_column: event_date}` on a workflow.

    The submitter sends up to `max_windows` contiguous queued windows of the workflow and instance as
    one EXPLICIT window; the landing splits the result back into each window's partition by
    `split_column`, which must be a DATE or TIMESTAMP column of AMC's outputColumns.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_windows: int = Field(ge=1, le=366)
    split_column: str
    #: A queued block is submitted once it is full (`max_windows`) or no window joined it for this
    #: long: a backfill enqueues its windows one run at a time, and a pack sent after the first few
    #: would cost one execution per few windows.
    settle_seconds: float = Field(default=60.0, ge=0, le=3600)

    @field_validator("split_column")
    @classmethod
    def _split_column(cls, value: str) -> str:
        if not COLUMN_PATTERN.match(value):
            raise ValueError(f"expected a column name ([A-Za-z_][A-Za-z0-9_]*), got {value!r}")
        return value
