"""AsyncAmcClient against the simulator: bounded concurrency, one token refresh for many tasks,
and the same endpoint/fault behaviour as the sync client (they share one core).

No pytest-asyncio in the venv: each test runs its coroutine with asyncio.run.
"""

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from amc_pipeline.amc.auth import TokenState
from amc_pipeline.amc.client import AmcClient, AsyncAmcClient
from amc_pipeline.amc.errors import AmbiguousCreateError, AmcAuthError, AmcError, ErrorType
from amc_pipeline.simulator import Fault, Scenario
from amc_pipeline_tests.amc.conftest import FAST_RETRY, credentials_for
from amc_pipeline_tests.amc.test_client import body_for, stat


def since() -> datetime:
    return datetime.now(UTC) - timedelta(hours=1)


def async_client(sim, concurrency: int = 5, **kwargs) -> AsyncAmcClient:
    kwargs.setdefault("retry", FAST_RETRY)
    kwargs.setdefault("timeout", 5.0)
    return AsyncAmcClient(sim.url, credentials_for(sim), concurrency=concurrency, **kwargs)


@pytest.mark.parametrize("sim_overrides", [{"latency_seconds": 0.05}])
def test_many_polls_run_concurrently_within_the_limit(sim, client, instance):
    ids = [client.create_execution(instance, body_for(token=f"c{i}")).execution_id for i in range(30)]
    tokens_before = stat(sim, "token")
    in_flight = {"now": 0, "max": 0}

    async def on_request(request: httpx.Request) -> None:
        in_flight["now"] += 1
        in_flight["max"] = max(in_flight["max"], in_flight["now"])

    async def on_response(response: httpx.Response) -> None:
        in_flight["now"] -= 1

    async def main():
        async with async_client(sim, concurrency=5) as amc:
            amc._http.event_hooks = {"request": [on_request], "response": [on_response]}
            return await asyncio.gather(*(amc.get_execution(instance, i) for i in ids))

    results = asyncio.run(main())
    assert [r.execution_id for r in results] == ids
    assert all(r.request_id for r in results)
    assert 2 <= in_flight["max"] <= 5  # concurrent, and never beyond the pool size
    assert stat(sim, "token") - tokens_before == 1  # 30 tasks, one token fetch between them


def test_async_pool_is_sized_to_concurrency(sim):
    async def main():
        async with async_client(sim, concurrency=7) as amc:
            pool = amc._http._transport._pool
            return pool._max_connections, pool._max_keepalive_connections

    assert asyncio.run(main()) == (7, 7)


def test_async_every_endpoint(sim, instance):
    sim.set_scenario("stuckwf", Scenario(kind="stuck_running"))

    async def main():
        async with async_client(sim) as amc:
            created = await amc.create_execution(instance, body_for())
            stuck = await amc.create_execution(instance, body_for("stuckwf"))
            cancelled = await amc.cancel_execution(instance, stuck.execution_id)
            sim.advance_clock(60)
            done = await amc.get_execution(instance, created.execution_id)
            urls = await amc.get_download_urls(instance, created.execution_id)
            page, token = await amc.list_executions_page(instance, min_creation_time=since(), limit=1)
            listed = [e.execution_id async for e in amc.list_executions(instance, min_creation_time=since(), limit=1)]
            return created, cancelled, done, urls, page, token, listed

    created, cancelled, done, urls, page, token, listed = asyncio.run(main())
    assert cancelled.status == "CANCELLED" and done.status == "SUCCEEDED"
    assert len(urls) == len(sim.served_files(created.execution_id))
    assert len(page) == 1 and token and len(listed) == 2


def test_async_faults_retry_and_ambiguous_create(sim, instance):
    body = body_for()

    async def main():
        async with async_client(sim) as amc:
            sim.add_fault(Fault(kind="lost_create_response", endpoint="create", times=1))
            with pytest.raises(AmbiguousCreateError):
                await amc.create_execution(instance, body)
            found = [e async for e in amc.list_executions(instance, workflow_id="daily_reach-t1")]
            sim.add_fault(Fault(kind="throttle", endpoint="get", times=1, retry_after=0))
            sim.add_fault(Fault(kind="error500", endpoint="get", times=1))
            sim.add_fault(Fault(kind="drop", endpoint="get", times=1))
            again = await amc.get_execution(instance, found[0].execution_id)
            return found, again

    found, again = asyncio.run(main())
    assert len(found) == 1 and again.execution_id == found[0].execution_id
    assert len(sim.executions()) == 1 and stat(sim, "create") == 1
    assert stat(sim, "get") == 4


def test_async_revoked_token_refreshes_once_for_many_tasks(sim, client, instance):
    ids = [client.create_execution(instance, body_for(token=f"r{i}")).execution_id for i in range(10)]

    async def main():
        async with async_client(sim, concurrency=10) as amc:
            await amc.get_execution(instance, ids[0])
            sim.revoke_tokens()
            return await asyncio.gather(*(amc.get_execution(instance, i) for i in ids))

    before = stat(sim, "token")
    results = asyncio.run(main())
    assert [r.execution_id for r in results] == ids
    assert stat(sim, "token") - before == 2  # the first token, then exactly one refresh


def test_async_errors_are_classified(sim, instance):
    sim.set_scenario("badsql", Scenario(kind="sql_error"))

    async def main():
        async with async_client(sim) as amc:
            with pytest.raises(AmcError) as query:
                await amc.create_execution(instance, body_for("badsql"))
        async with AsyncAmcClient(
            sim.url, credentials_for(sim, client_secret="wrong-secret-value"), retry=FAST_RETRY
        ) as amc:
            with pytest.raises(AmcAuthError) as auth:
                await amc.get_execution(instance, "x")
        return query.value, auth.value

    query, auth = asyncio.run(main())
    assert query.error_type is ErrorType.QUERY and "Unable to compile" in query.details
    assert auth.error_type is ErrorType.AUTHENTICATION


def test_sync_and_async_clients_on_one_token_cache_fetch_one_token(sim, instance):
    """What AmcResource relies on: its clients share one TokenState, so a run refreshes once."""
    tokens = TokenState(credentials_for(sim))
    with AmcClient(sim.url, credentials_for(sim), retry=FAST_RETRY, tokens=tokens) as first:
        assert not first.closed
        first.list_executions_page(instance, min_creation_time=since())
    assert first.closed

    async def main():
        async with async_client(sim, tokens=tokens) as amc:
            await amc.list_executions_page(instance, min_creation_time=since())

    asyncio.run(main())
    assert stat(sim, "token") == 1 and tokens.refresh_count == 1 and stat(sim, "list") == 2
    with pytest.raises(ValueError, match="other credentials"):
        AmcClient(sim.url, credentials_for(sim, client_secret="another-secret"), tokens=tokens)
