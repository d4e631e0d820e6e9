"""What Dagster loads: the merge of `defs/`, built from the YAML config.

The config is validated before anything else, so a bad file fails the code location with one line
that names the file, the field and the problem. Each module of `defs/` returns the `Definitions`
of one concern; this module only merges them and picks the executor.
"""

import dagster as dg

from amc_pipeline.config import PipelineConfig, load_config
from amc_pipeline.defs.automation import automation_defs
from amc_pipeline.defs.cancel import cancel_defs
from amc_pipeline.defs.checks import checks_defs
from amc_pipeline.defs.downstream import downstream_defs
from amc_pipeline.defs.health import health_defs
from amc_pipeline.defs.landing import landing_defs, workflow_jobs
from amc_pipeline.defs.monitor import monitor_defs
from amc_pipeline.defs.notifications import notifications_defs
from amc_pipeline.defs.resources import resources_defs
from amc_pipeline.defs.schedules import schedules_defs
from amc_pipeline.defs.workflow_assets import workflow_assets_defs


def build_definitions(config: PipelineConfig) -> dg.Definitions:
    jobs = workflow_jobs(config)
    return dg.Definitions.merge(
        resources_defs(config),
        workflow_assets_defs(config),
        monitor_defs(config),
        cancel_defs(config),
        landing_defs(config, jobs),
        schedules_defs(jobs),
        checks_defs(config),
        health_defs(config),
        downstream_defs(config),
        automation_defs(config),
        notifications_defs(config),
        # Every step here is small and I/O-bound: one process per run, not one more per step (the
        # multiprocess default made the checks job start ~10 Python processes every check interval).
        dg.Definitions(executor=dg.in_process_executor),
    )


defs = build_definitions(load_config())
