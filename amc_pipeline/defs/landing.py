"""One asset job per workflow, and `amc_landing_sensor`, which turns each finished execution into a run.

Why a job per workflow: the workflows' partitions differ (daily, weekly, time zones), and a
partitioned job holds assets of one partitioning only.
"""

from datetime import UTC, datetime

import dagster as dg

# The type `define_asset_job` returns; Dagster does not export it at the top level.
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from amc_pipeline.config import PipelineConfig
from amc_pipeline.defs.observations import workflow_asset_key
from amc_pipeline.defs.resources import StoreResource

MAX_REQUESTS_PER_TICK = 50


def workflow_job_name(workflow: str) -> str:
    return f"amc_{workflow}_job"


def workflow_jobs(config: PipelineConfig) -> list[UnresolvedAssetJobDefinition]:
    return [
        dg.define_asset_job(
            workflow_job_name(w.name),
            selection=dg.AssetSelection.assets(workflow_asset_key(w.name)),
            description=f"Materialize amc/{w.name}: land its SUCCESS execution or request one.",
            tags={"amc/instance": w.instance_id},
        )
        for w in config.workflows
    ]


def _died_before_landing(instance: dg.DagsterInstance, run_key: str) -> bool:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": run_key}), limit=1)
    return bool(runs) and runs[0].status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def landing_defs(config: PipelineConfig, jobs: list[UnresolvedAssetJobDefinition]) -> dg.Definitions:
    workflows = {w.name for w in config.workflows}

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
            if execution.workflow not in workflows:
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
                    job_name=workflow_job_name(execution.workflow),
                    partition_key=execution.partition_key,
                    tags={"amc/instance": execution.instance_id, "amc/landing": "true",
                          "amc/execution": str(execution.id)},
                )
            )
        if not requests:
            return dg.SkipReason("no finished AMC execution waiting to land")
        return requests

    return dg.Definitions(jobs=jobs, sensors=[amc_landing_sensor])
