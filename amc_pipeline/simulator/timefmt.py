"""AMC's time format, shared by the simulator's state, schedules and routes."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_z(epoch: float, millis: bool = False) -> str:
    """AMC's time format: `2024-09-25T03:11:52Z` (validatedTime carries millis)."""
    moment = datetime.fromtimestamp(epoch, UTC)
    if millis:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
