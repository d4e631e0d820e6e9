"""The sensor that evaluates automation conditions (the roll-up's and the monitoring assets' crons).

Running by default and no faster than the monitor's sensor: in the demo a landed partition updates
the roll-up within a tick, and an idle deployment evaluates cheaply.
"""

import dagster as dg

from amc_pipeline.config import PipelineConfig

#: Each tick evaluates every asset's condition: more often than every 15 s only adds daemon load.
MIN_INTERVAL_SECONDS = 15


def automation_defs(config: PipelineConfig) -> dg.Definitions:
    return dg.Definitions(sensors=[
        dg.AutomationConditionSensorDefinition(
            "amc_automation_sensor",
            target=dg.AssetSelection.all(),
            default_status=dg.DefaultSensorStatus.RUNNING,
            minimum_interval_seconds=max(config.monitor.sensor_interval_seconds, MIN_INTERVAL_SECONDS),
        ),
    ])
