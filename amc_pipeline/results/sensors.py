"""The landing sensor: turns each finished, not yet landed execution into one asset run."""

from datetime import UTC, datetime
from typing import Any

import dagster as dg

from amc_pipeline.config import PipelineConfig
from amc_pipeline.resources import StoreResource
from amc_pipeline.results.assets import asset_key

MAX_REQUESTS_PER_TICK = 50


def workflow_job_name(workflow: str) -> str:
    return f"amc_{workflow}_job"


def build_workflow_jobs(config: PipelineConfig) -> list[Any]:
    """One asset job per workflow (the workflows' partitions differ, so one job cannot hold them all)."""
    return [
        dg.define_asset_job(
            workflow_job_name(w.name),
            selection=dg.AssetSelection.assets(asset_key(w)),
            description=f"Materialize amc/{w.name}: land its SUCCESS execution or request one.",
            tags={"amc/instance": w.instance_id},
        )
        for w in config.workflows
    ]


def build_schedules(jobs: list[Any]) -> list[dg.ScheduleDefinition]:
    """Request each workflow's newest window once it is available (RUNNING by default)."""
    return [
        dg.build_schedule_from_partitioned_job(job, default_status=dg.DefaultScheduleStatus.RUNNING)
        for job in jobs
    ]


def _died_before_landing(instance: dg.DagsterInstance, run_key: str) -> bool:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": run_key}), limit=1)
    return bool(runs) and runs[0].status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def build_landing_sensor(config: PipelineConfig, jobs: list[Any]) -> dg.SensorDefinition:
    workflows = {w.name: w for w in config.workflows}

    @dg.sensor(
        name="amc_landing_sensor",
        jobs=jobs,
        minimum_interval_seconds=config.monitor.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Requests amc/<workflow> for each SUCCESS execution not yet landed "
        "(run key land:<execution id>:<attempt>).",
    )
    def amc_landing_sensor(context: dg.SensorEvaluationContext, amc_store: StoreResource):
        now = datetime.now(UTC)
        store = amc_store.get_store()
        requests = []
        for execution in store.landable(now, limit=MAX_REQUESTS_PER_TICK,
                                        max_land_attempts=config.monitor.max_landing_attempts):
            workflow = workflows.get(execution.workflow)
            if workflow is None:
                continue
            run_key = f"land:{execution.id}:{execution.land_attempts + 1}"
            if _died_before_landing(context.instance, run_key):
                # The run with this key ended before it could count its attempt (the code did not load,
                # or run monitoring failed a run its dead daemon left STARTING): count it here, so the
                # next tick asks again under a new key. Bounded by max_landing_attempts.
                store.begin_landing(execution.id, lease_until=now)
                store.record_land_failure(execution.id, error=f"landing run for {run_key} ended before landing",
                                          next_land_at=now)
                continue
            requests.append(
                dg.RunRequest(
                    run_key=run_key,
                    job_name=workflow_job_name(workflow.name),
                    partition_key=execution.partition_key,
                    tags={"amc/instance": execution.instance_id, "amc/landing": "true",
                          "amc/execution": str(execution.id)},
                )
            )
        if not requests:
            return dg.SkipReason("no finished AMC execution waiting to land")
        return requests

    return amc_landing_sensor
