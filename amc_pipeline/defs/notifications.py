"""`amc_notifications_sensor`: tells Slack / webhook targets about failed, stuck, landing-failed and
recovered windows and an unhealthy monitor, exactly once per event per target.

Why a sensor that launches nothing: the store already knows every event, and a message is one short
POST. Each tick runs one pass of the engine (`notify/service.notify_pass`) in the tick itself, bounded
by `notifications.tick_budget_seconds` with short HTTP timeouts, and returns a SkipReason: an idle
system launches zero runs, and a dead endpoint costs a timeout per tick, never a failed run or a
blocked monitor. Present only when `notifications:` has targets. Target URLs are read from the
environment in the engine and never reach the tick's logs or cursor.
"""

import dagster as dg

from amc_pipeline.config import PipelineConfig
from amc_pipeline.defs.resources import StoreResource
from amc_pipeline.notify.service import notify_pass

SENSOR_NAME = "amc_notifications_sensor"


def notifications_defs(config: PipelineConfig) -> dg.Definitions:
    if config.notifications is None or not config.notifications.targets:
        return dg.Definitions()
    targets = ", ".join(f"{t.name} ({t.kind})" for t in config.notifications.targets)

    @dg.sensor(name=SENSOR_NAME, minimum_interval_seconds=config.monitor.sensor_interval_seconds,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"Sends failed/stuck/landing_failed/recovered/unhealthy notifications to {targets}, "
                           "once per event per target, in the tick itself (launches no run).")
    def amc_notifications_sensor(context: dg.SensorEvaluationContext, amc_store: StoreResource):
        report = notify_pass(amc_store.get_store(), config)
        summary = report.summary()
        if report.sent or report.failing or report.errors:
            context.log.info(f"notifications: {summary}")
        return dg.SkipReason(f"notifications: {summary}")

    return dg.Definitions(sensors=[amc_notifications_sensor])
