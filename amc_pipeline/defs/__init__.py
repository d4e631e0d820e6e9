"""The Dagster shell: one module per Dagster concern, each returning a `dagster.Definitions`.

`amc_pipeline.definitions` merges them. Nothing here decides anything about an execution's life:
the modules turn configuration into Dagster objects, call the engine (`monitor/`, `results/`,
`health/`) and report what it did as Dagster events. See docs/architecture.md.

- `resources.py`: `AmcResource` (cached client and token per run) and `StoreResource`.
- `workflow_assets.py`: one partitioned asset per workflow (request or land its window).
- `metadata.py`: the materialization metadata of a landed window.
- `monitor.py`: the `amc_monitor` job (submit, poll) and its sensor.
- `cancel.py`: the `cancel_amc_executions` job.
- `landing.py`: one asset job per workflow and the landing sensor.
- `schedules.py`: a schedule per workflow job for the newest window.
- `checks.py`: data checks at landing, stuck/failed checks, the checks job and its sensor.
- `health.py`: `amc/execution_metrics`, `amc/execution_overview` and `amc_pipeline_healthy`.
- `notifications.py`: the notifications sensor (present when targets are configured).
- `downstream.py`: the example weekly roll-up, kept current by automation.
- `automation.py`: the automation-condition sensor.
- `observations.py`: status changes as `AssetObservation`s.
"""
