"""The simulator's HTTP routes, one module per part of the API Amazon serves.

`auth` is Login with Amazon's token endpoint plus the header checks every reporting call passes;
`executions`, `downloads` (download URLs and the pre-signed S3 objects), `workflows` and `schedules` are the
reporting API; `admin` is the simulator's own `/_simulator/` control API. `responses` holds the
answer shapes they (and the fault injection in `app`) share, so an error looks the same wherever
it comes from.
"""

from __future__ import annotations

from starlette.routing import Route

from amc_pipeline.simulator.routes.admin import AdminRoutes
from amc_pipeline.simulator.routes.auth import TokenRoutes
from amc_pipeline.simulator.routes.downloads import DownloadRoutes
from amc_pipeline.simulator.routes.executions import ExecutionRoutes
from amc_pipeline.simulator.routes.schedules import ScheduleRoutes
from amc_pipeline.simulator.routes.workflows import WorkflowRoutes
from amc_pipeline.simulator.state import SimulatorState


def all_routes(state: SimulatorState) -> list[Route]:
    """Every route of the simulator over one shared state."""
    return [
        *TokenRoutes(state).routes(),
        *ExecutionRoutes(state).routes(),
        *DownloadRoutes(state).routes(),
        *WorkflowRoutes(state).routes(),
        *ScheduleRoutes(state).routes(),
        *AdminRoutes(state).routes(),
    ]


__all__ = ["all_routes"]
