"""A workflow's `parameter_values` for one window: the templates of the YAML rendered from it.

Why at submit time: the same saved workflow runs for every window, so values such as a date range
or a label must follow the window an execution covers (`{window_start_date}`), not the day it runs.
"""

from amc_pipeline.amc.models import format_window_time
from amc_pipeline.config import WorkflowConfig
from amc_pipeline.partitions import Window
from amc_pipeline.templating import render


def window_values(window: Window) -> dict[str, str]:
    """What each placeholder of `templating.PLACEHOLDERS` stands for in `window`."""
    return {
        "partition_key": window.partition_key,
        "window_start": format_window_time(window.start_local),
        "window_end": format_window_time(window.end_local),
        "window_start_date": window.start_local.date().isoformat(),
        "window_end_date": window.end_local.date().isoformat(),
        "timezone": window.timezone,
    }


def parameter_values(workflow: WorkflowConfig, window: Window) -> dict[str, str]:
    """The workflow's parameter values rendered for `window` (placeholders were checked at load)."""
    values = window_values(window)
    return {key: render(text, values) for key, text in workflow.parameter_values.items()}
