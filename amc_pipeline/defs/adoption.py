"""`amc_adoption_sensor`: a monitor run every `adopt_interval_seconds` while any workflow adopts executions.

Why a sensor of its own: the monitor sensor reads only the store, and an AMC schedule's run (or one
started in the console) is not in the store until a monitor run lists it. So for workflows with
`amc_schedule` or `adopt_external` (and only then: without them this sensor does not exist and an
idle system still launches nothing) it requests the `amc_monitor` job, whose first op adopts.
"""

from datetime import UTC, datetime

import dagster as dg

from amc_pipeline.config import PipelineConfig

ADOPTION_SENSOR = "amc_adoption_sensor"


def adoption_sensors(config: PipelineConfig, monitor_job: dg.JobDefinition) -> list[dg.SensorDefinition]:
    """The adoption sensor for `config`, or nothing when no workflow adopts executions."""
    adopting = sorted(w.name for w in config.workflows if w.adopts)
    if not adopting:
        return []
    interval = config.monitor.adopt_interval_seconds

    @dg.sensor(
        name=ADOPTION_SENSOR,
        job=monitor_job,
        minimum_interval_seconds=interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Requests an amc_monitor run every {interval} s to adopt AMC-scheduled or external "
                    f"executions of: {', '.join(adopting)}.",
    )
    def amc_adoption_sensor(context: dg.SensorEvaluationContext):
        from amc_pipeline.defs.monitor import monitor_in_flight  # one definition of "a monitor run is live"

        running = monitor_in_flight(context.instance)
        if running is not None:
            return dg.SkipReason(f"amc_monitor run {running.run_id} is {running.status.value}: it adopts too")
        bucket = int(datetime.now(UTC).timestamp()) // interval
        return dg.RunRequest(run_key=f"adopt:{bucket}", tags={"amc/adopt": "true"})

    return [amc_adoption_sensor]
