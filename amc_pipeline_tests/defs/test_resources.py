"""`AmcResource` keeps one client and one access token for the life of a run.

Counted where it matters: at the simulator's token endpoint, over real monitor and landing runs of
the project's own Definitions (resources from the environment, as in production).
"""

import asyncio
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from amc_pipeline.definitions import build_definitions
from amc_pipeline.defs.resources import AmcResource
from amc_pipeline_tests.harness import rig
from amc_pipeline_tests.results.test_assets import CAMPAIGN, sim_environment

SINCE = datetime.now(UTC) - timedelta(hours=1)


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("AMC_PIPELINE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def _delta(before: dict[str, int], after: dict[str, int], endpoint: str) -> int:
    return after.get(endpoint, 0) - before.get(endpoint, 0)


def test_one_token_per_monitor_run_and_per_landing_run(env, tmp_path, monkeypatch):
    with rig([CAMPAIGN], database_url=f"sqlite:///{tmp_path / 's.db'}") as r:
        sim_environment(monkeypatch, r)
        defs = build_definitions(r.config)
        monitor = defs.resolve_job_def("amc_monitor")
        with dg.instance_for_test() as instance:
            # One window already at AMC and due for a status check, one queued: the run's submit op
            # (blocking client) creates, its poll op (async client) checks.
            r.request("campaign_performance", "2026-10-04")
            r.monitor_pass()
            r.request("campaign_performance", "2026-10-05")
            time.sleep(0.3)  # past poll_initial_seconds: the first window is due
            before = r.sim.stats()
            assert monitor.execute_in_process(instance=instance).success
            after = r.sim.stats()
            assert _delta(before, after, "create") == 1
            assert _delta(before, after, "get") + _delta(before, after, "list") >= 1
            assert _delta(before, after, "token") == 1

            r.drive(lambda: r.status("campaign_performance", "2026-10-05") == "SUCCESS")
            job = defs.resolve_job_def("amc_campaign_performance_job")
            before = r.sim.stats()
            result = job.execute_in_process(instance=instance, partition_key="2026-10-05")
            after = r.sim.stats()
            assert result.success and len(result.get_asset_materialization_events()) == 1
            assert _delta(before, after, "download_urls") >= 1
            assert _delta(before, after, "token") == 1


def test_clients_of_one_resource_share_the_token(env, tmp_path):
    with rig([CAMPAIGN], database_url=f"sqlite:///{tmp_path / 's.db'}") as r:
        cfg = r.sim.config
        resource = AmcResource(api_url=r.sim.url, token_url=r.sim.token_url, client_id=cfg.client_id,
                               client_secret=cfg.client_secret, refresh_token=cfg.refresh_token)
        instance = r.config.instances[0]
        before = r.sim.stats()
        client = resource.get_client()
        assert resource.get_client() is client
        client.list_executions_page(instance, min_creation_time=SINCE, limit=1)
        with resource.get_client() as closing:  # a caller that closes it does not cost a new token
            closing.list_executions_page(instance, min_creation_time=SINCE, limit=1)
        reopened = resource.get_client()
        assert reopened is not client
        reopened.list_executions_page(instance, min_creation_time=SINCE, limit=1)

        async def poll_once() -> None:
            async with resource.get_async_client(2) as amc:
                await amc.list_executions_page(instance, min_creation_time=SINCE, limit=1)

        asyncio.run(poll_once())
        resource.close()
        after = r.sim.stats()
        assert _delta(before, after, "list") == 4
        assert _delta(before, after, "token") == 1
        assert resource.token_refreshes == 1
