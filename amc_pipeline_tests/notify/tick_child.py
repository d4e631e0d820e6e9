"""A "restarted daemon": a fresh process that evaluates amc_notifications_sensor once on the same store.

Usage: python -m amc_pipeline_tests.notify.tick_child <config.yaml> <database url>
"""

import sys

import dagster as dg

from amc_pipeline.config import load_config
from amc_pipeline.defs.notifications import SENSOR_NAME, notifications_defs
from amc_pipeline.defs.resources import StoreResource


def main() -> None:
    config = load_config(sys.argv[1])
    sensor = notifications_defs(config).resolve_sensor_def(SENSOR_NAME)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources={
            "amc_store": StoreResource(database_url=sys.argv[2])})
        result = sensor.evaluate_tick(context)
        print(f"runs={len(result.run_requests or [])} skip={result.skip_message}")


if __name__ == "__main__":
    main()
