"""A schedule per workflow job: request each workflow's newest window once it is available.

Running by default, so a fresh deployment keeps its daily windows coming without a click; the
partitioned job's own cadence (and `data_lag_days` in its partitions) decides when.
"""

import dagster as dg

# The type `define_asset_job` returns; Dagster does not export it at the top level.
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition


def schedules_defs(jobs: list[UnresolvedAssetJobDefinition]) -> dg.Definitions:
    return dg.Definitions(
        jobs=jobs,
        schedules=[
            dg.build_schedule_from_partitioned_job(job, default_status=dg.DefaultScheduleStatus.RUNNING)
            for job in jobs
        ],
    )
