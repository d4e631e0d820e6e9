"""Every AMC endpoint the project uses, called through the project's own clients against the simulator.

One scenario, recorded by `openapi.Recorder`, so the contract tests check the requests our client
really builds and the answers the simulator really gives (success and error shapes), not samples
written by hand.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from amc_pipeline.amc.bodies import execution_body
from amc_pipeline.amc.client import AmcClient, AsyncAmcClient
from amc_pipeline.amc.errors import AmcError
from amc_pipeline.amc.workflows_api import AmcScheduleRecord, SavedWorkflow
from amc_pipeline.config import InstanceConfig
from amc_pipeline.simulator import Scenario, SimulatorServer
from amc_pipeline_tests.contract.openapi import Exchange, Recorder
from amc_pipeline_tests.harness import FAST_RETRY, credentials

SQL = "SELECT campaign, SUM(impressions) AS impressions FROM dsp_impressions GROUP BY 1"


def _body(workflow_id: str, *, sql: str | None, day: int) -> dict:
    start = datetime(2026, 10, day)
    return execution_body(workflow_id=workflow_id, sql=sql, window_start=start, window_end=start + timedelta(days=1),
                          time_zone="America/New_York", timeout_seconds=3600,
                          parameter_values={"label": f"2026-10-{day:02d}"}, ignore_data_gaps=True)


def run_scenario(sim: SimulatorServer, instance: InstanceConfig) -> list[Exchange]:
    """Drive every endpoint (and the error answers the pipeline handles); return the exchanges."""
    recorder = Recorder()
    sim.set_scenario("broken", Scenario(kind="fail", failure_reason="Resource limit exceeded"))
    with AmcClient(sim.url, credentials(sim), retry=FAST_RETRY) as client:
        recorder.attach(client._http)  # the client's own transport: what it sends is what is checked
        saved = SavedWorkflow("contract", SQL, ({"name": "label", "dataType": "STRING", "columnType": "DIMENSION"},))
        assert client.get_workflow(instance, "contract") is None  # 404 answer
        client.save_workflow(instance, saved, create=True)
        assert client.get_workflow(instance, "contract") == saved
        client.save_workflow(instance, SavedWorkflow("contract", SQL + " ", saved.input_parameters), create=False)
        assert list(client.list_schedules(instance)) == []
        schedule = AmcScheduleRecord("contract-schedule", "contract", "Daily", hour_utc=0)
        client.save_schedule(instance, schedule, create=True)
        client.save_schedule(instance, AmcScheduleRecord("contract-schedule", "contract", "Weekly", 3, "Monday"),
                             create=False)
        assert [s.schedule_id for s in client.list_schedules(instance)] == ["contract-schedule"]

        ad_hoc = client.create_execution(instance, _body("adhoc-1", sql=SQL, day=5))
        by_id = client.create_execution(instance, _body("contract", sql=None, day=6))
        broken = client.create_execution(instance, _body("broken-1", sql=SQL, day=7))
        client.get_execution(instance, ad_hoc.execution_id)  # PENDING
        client.cancel_execution(instance, by_id.execution_id)
        sim.advance_clock(8 * 86400)  # everything finishes; the weekly schedule runs once
        client.get_execution(instance, ad_hoc.execution_id)  # SUCCEEDED, with outputColumns
        client.get_execution(instance, broken.execution_id)  # FAILED, with its reason
        client.get_download_urls(instance, ad_hoc.execution_id)
        try:
            client.cancel_execution(instance, ad_hoc.execution_id)  # terminal: AMC's 400
        except AmcError as exc:
            assert exc.status_code == 400
        try:
            client.get_execution(instance, "00000000-0000-0000-0000-000000000000")  # AMC's 404
        except AmcError as exc:
            assert exc.status_code == 404
        since = datetime.now(UTC) - timedelta(days=1)
        page, token = client.list_executions_page(instance, min_creation_time=since, limit=1)
        assert token is not None
        client.list_executions_page(instance, min_creation_time=since, next_token=token, limit=1)
        list(client.list_executions(instance, workflow_id="contract", include_cancelled=True))
        list(client.list_executions(instance, min_creation_time=since,
                                    max_creation_time=datetime.now(UTC) + timedelta(days=9), sort_ascending=True))

    async def poll() -> None:  # the poller's transport (list pages and GETs from the async client)
        async with AsyncAmcClient(sim.url, credentials(sim), retry=FAST_RETRY) as client:
            recorder.attach_async(client._http)
            await client.list_executions_page(instance, min_creation_time=since, include_cancelled=True)
            await client.get_execution(instance, broken.execution_id)

    asyncio.run(poll())
    return recorder.exchanges
