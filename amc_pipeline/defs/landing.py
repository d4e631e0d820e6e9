"""One asset job per workflow, and `amc_landing_sensor`, which turns each finished execution into a run.

Why a job per workflow: the workflows' partitions differ (daily, weekly, time zones), and a
partitioned job holds assets of one partitioning only.
"""

from collections import Counter
from datetime import UTC, datetime

import dagster as dg

# The type `define_asset_job` returns; Dagster does not export it at the top level.
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from amc_pipeline.config import PipelineConfig
from amc_pipeline.defs.observations import workflow_asset_key
from amc_pipeline.defs.pack_landing import pack_landing_requests
from amc_pipeline.defs.resources import StoreResource
from amc_pipeline.defs.workflow_assets import REPORT_FAILURE_TAG
from amc_pipeline.health.status import FINAL_FAILURES
from amc_pipeline.store.store import ExecutionStore

MAX_REQUESTS_PER_TICK = 50


def workflow_job_name(workflow: str) -> str:
    return f"amc_{workflow}_job"


def workflow_jobs(config: PipelineConfig) -> list[UnresolvedAssetJobDefinition]:
    return [
        dg.define_asset_job(
            workflow_job_name(w.name),
            selection=dg.AssetSelection.assets(workflow_asset_key(w.name)),
            description=f"Materialize amc/{w.name}: land its SUCCESS execution or request one.",
            # A fanned-out workflow's instance is per partition: its landing runs carry the tag instead.
            tags={} if w.fan_out else {"amc/instance": w.instance_id},
        )
        for w in config.workflows
    ]


#: Run statuses that hold a landing slot (queued runs count: they will start).
_IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
              dg.DagsterRunStatus.STARTED]


def landings_in_flight(instance: dg.DagsterInstance) -> Counter[str]:
    """In-flight landing runs per AMC instance (one run-storage query)."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"amc/landing": "true"}, statuses=_IN_FLIGHT))
    return Counter(run.tags.get("amc/instance", "") for run in runs)


def _died_before_landing(instance: dg.DagsterInstance, run_key: str) -> bool:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": run_key}), limit=1)
    return bool(runs) and runs[0].status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def _failure_reports(store: ExecutionStore, workflows: set[str], cursor: str | None
                     ) -> tuple[list[dg.RunRequest], str | None]:
    """One failing run per window whose execution failed for good since the cursor (its completion time).

    Why: Dagster shows a partition as Failed when the latest run meant to materialize it failed;
    without this, a window AMC rejected would look merely Missing. The run (tagged
    REPORT_FAILURE_TAG) fails with AMC's reason and never enqueues; materializing the partition
    again re-queues it as before. The run key makes a report once per attempt, even if the cursor
    were lost.
    """
    since = datetime.fromisoformat(cursor) if cursor else None
    fresh = [e for e in store.list_executions(status=FINAL_FAILURES, live_only=True, limit=2_000)
             if e.workflow in workflows and e.attempt is not None and e.attempt.completed_at is not None
             and (since is None or e.attempt.completed_at > since)]
    fresh.sort(key=lambda e: e.attempt.completed_at)
    fresh = fresh[:MAX_REQUESTS_PER_TICK]
    requests = [
        dg.RunRequest(
            run_key=f"failed:{e.id}:{e.attempt.attempt}",
            job_name=workflow_job_name(e.workflow),
            partition_key=e.partition_key,
            tags={"amc/instance": e.instance_id, REPORT_FAILURE_TAG: str(e.id)},
            # The asset alone: its checks would otherwise show as failed with it (upstream failed).
            asset_selection=[workflow_asset_key(e.workflow)],
            asset_check_keys=[],
        )
        for e in fresh
    ]
    return requests, (fresh[-1].attempt.completed_at.isoformat() if fresh else cursor)


def landing_defs(config: PipelineConfig, jobs: list[UnresolvedAssetJobDefinition]) -> dg.Definitions:
    workflows = {w.name for w in config.workflows}

    @dg.sensor(
        name="amc_landing_sensor",
        jobs=jobs,
        minimum_interval_seconds=config.monitor.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Requests amc/<workflow> for each SUCCESS execution not yet landed "
        "(run key land:<execution id>:<attempt>), and a failing run for each window whose execution "
        "failed for good (run key failed:<execution id>:<attempt>), so its partition shows Failed.",
    )
    def amc_landing_sensor(context: dg.SensorEvaluationContext, amc_store: StoreResource):
        now = datetime.now(UTC)
        store = amc_store.get_store()
        # Landings download and convert: at most max_landings_per_instance runs per AMC instance and
        # max_concurrent_landings in all, counting the ones already in flight; the rest wait a tick.
        busy = landings_in_flight(context.instance)
        total = sum(busy.values())
        held = 0
        # Read past the first page, so one busy instance's backlog does not hide the others' windows.
        landable = store.landable(now, limit=MAX_REQUESTS_PER_TICK * 10,
                                  max_land_attempts=config.monitor.max_landing_attempts)
        # Windows of a pack land together: one run per pack (defs/pack_landing.py), within the limits.
        landable, pack_requests = pack_landing_requests(store, context.instance, landable, workflow_job_name,
                                                         workflows)
        requests = []
        for request in pack_requests:
            where = request.tags["amc/instance"]
            if total >= config.monitor.max_concurrent_landings or \
                    busy[where] >= config.monitor.max_landings_per_instance:
                held += 1
                continue
            requests.append(request)
            busy[where] += 1
            total += 1
        for execution in landable:
            if execution.workflow not in workflows:
                continue
            if len(requests) >= MAX_REQUESTS_PER_TICK:
                break
            if total >= config.monitor.max_concurrent_landings or \
                    busy[execution.instance_id] >= config.monitor.max_landings_per_instance:
                held += 1
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
            busy[execution.instance_id] += 1
            total += 1
        failures, cursor = _failure_reports(store, workflows, context.cursor)
        if cursor != context.cursor:
            context.update_cursor(cursor)
        requests += failures
        if not requests:
            if held:
                return dg.SkipReason(f"{held} finished execution(s) wait for a landing slot "
                                     f"({total} landing run(s) in flight)")
            return dg.SkipReason("no finished AMC execution waiting to land or to report as failed")
        return requests

    return dg.Definitions(jobs=jobs, sensors=[amc_landing_sensor])
