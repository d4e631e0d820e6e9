"""What Dagster loads: assets, checks, jobs, sensors and resources built from the YAML config.

The config is validated before anything else, so a bad file fails the code location with one line
that names the file, the field and the problem.
"""

import os

import dagster as dg

from amc_pipeline.amc.resource import AmcResource
from amc_pipeline.config import DEFAULT_API_URL, DEFAULT_TOKEN_URL, PipelineConfig, Settings, load_config
from amc_pipeline.downstream import SOURCE, campaign_performance_weekly
from amc_pipeline.health.assets import build_health_defs
from amc_pipeline.monitor.jobs import build_monitor_defs
from amc_pipeline.resources import StoreResource
from amc_pipeline.results.assets import build_workflow_assets
from amc_pipeline.results.sensors import build_landing_sensor, build_schedules, build_workflow_jobs


def _env_or(name: str, default: str) -> str | dg.EnvVar:
    """An EnvVar when set (so Dagster shows the name, never the value), else the default."""
    return dg.EnvVar(name) if os.environ.get(name) else default


def build_resources() -> dict:
    settings = Settings.from_env()
    return {
        "amc": AmcResource(
            api_url=_env_or("AMC_API_URL", DEFAULT_API_URL),
            token_url=_env_or("AMC_TOKEN_URL", DEFAULT_TOKEN_URL),
            client_id=dg.EnvVar("AMC_CLIENT_ID"),
            client_secret=dg.EnvVar("AMC_CLIENT_SECRET"),
            refresh_token=dg.EnvVar("AMC_REFRESH_TOKEN"),
        ),
        "amc_store": StoreResource(database_url=_env_or("AMC_PIPELINE_DATABASE_URL", settings.database_url)),
    }


def build_definitions(config: PipelineConfig) -> dg.Definitions:
    workflow_assets = build_workflow_assets(config)
    monitor_job, monitor_sensor, cancel_job = build_monitor_defs(config)
    workflow_jobs = build_workflow_jobs(config)
    health_assets, health_checks, checks_sensor, checks_job = build_health_defs(config)
    assets: list = [*workflow_assets, *health_assets]
    if any(w.name == SOURCE for w in config.workflows):
        assets.append(campaign_performance_weekly)
    return dg.Definitions(
        assets=assets,
        asset_checks=health_checks,
        jobs=[monitor_job, cancel_job, checks_job, *workflow_jobs],
        schedules=build_schedules(workflow_jobs),
        sensors=[
            monitor_sensor,
            checks_sensor,
            build_landing_sensor(config, workflow_jobs),
            dg.AutomationConditionSensorDefinition(
                "amc_automation_sensor",
                target=dg.AssetSelection.all(),
                default_status=dg.DefaultSensorStatus.RUNNING,
                minimum_interval_seconds=max(config.monitor.sensor_interval_seconds, 15),
            ),
        ],
        resources=build_resources(),
        # Every step here is small and I/O-bound: one process per run, not one more per step (the
        # multiprocess default made the checks job start ~10 Python processes every check interval).
        executor=dg.in_process_executor,
    )


defs = build_definitions(load_config())
