"""AmcClient against the simulator over real HTTP: every endpoint, every fault kind, tokens, pages.

Why these tests: the monitor trusts the client to (a) never create a duplicate execution, (b) ride
out AMC's throttling and transient failures inside a budget, and (c) classify what it cannot ride
out. Each test states which of those it pins down.
"""

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from amc_pipeline.amc.client import AmcClient, RetryPolicy, execution_body
from amc_pipeline.amc.errors import AmbiguousCreateError, AmcAuthError, AmcError, ErrorType
from amc_pipeline.config import InstanceConfig
from amc_pipeline.simulator import Fault, Scenario
from amc_pipeline_tests.amc.conftest import FAST_RETRY, credentials_for
from amc_pipeline_tests.constants import ADVERTISER_ID, INSTANCE_ID, MARKETPLACE_ID
from amc_pipeline_tests.simulator.api import Api

SQL = "SELECT advertiser, campaign, SUM(impressions) AS impressions FROM dsp_impressions GROUP BY 1, 2"


def body_for(workflow: str = "daily_reach", token: str = "t1", day: int = 1, sql: str | None = SQL) -> dict:
    return execution_body(
        workflow_id=f"{workflow}-{token}" if sql else workflow,
        sql=sql,
        window_start=datetime(2024, 1, day),
        window_end=datetime(2024, 1, day + 1),
        time_zone="UTC",
        timeout_seconds=3600,
    )


def since() -> datetime:
    return datetime.now(UTC) - timedelta(hours=1)


def resolve_ambiguous(client: AmcClient, instance, body: dict):
    """What the monitor does after an AmbiguousCreateError: list first, adopt a match, else create."""
    workflow_id = body.get("workflowId") or body["workflow"]["workflowId"]
    matches = [
        e
        for e in client.list_executions(instance, workflow_id=workflow_id, min_creation_time=since())
        if e.window_start_original == body["timeWindowStart"] and e.window_end_original == body["timeWindowEnd"]
    ]
    assert len(matches) <= 1
    if matches:
        return matches[0]
    return client.create_execution(instance, body)


def stat(sim, endpoint: str) -> int:
    return sim.stats().get(endpoint, 0)


# --------------------------------------------------------------------------------------------
# Endpoints


def test_execution_endpoints_round_trip(sim, client, instance):
    body = body_for()
    created = client.create_execution(instance, body)
    assert created.status == "PENDING"
    assert created.workflow_id == "daily_reach-t1"
    assert created.window_start_original == "2024-01-01T00:00:00"
    assert created.request_id  # x-amz-request-id kept on results
    [record] = sim.executions(INSTANCE_ID)
    assert record["workflowExecutionId"] == created.execution_id
    assert record["timeWindowTimeZoneOriginal"] == "UTC"

    fetched = client.get_execution(instance, created.execution_id)
    assert fetched.execution_id == created.execution_id
    assert fetched.request_id and fetched.request_id != created.request_id

    sim.advance_clock(60)
    done = client.get_execution(instance, created.execution_id)
    assert done.status == "SUCCEEDED"
    assert done.output_columns

    urls = client.get_download_urls(instance, created.execution_id)
    served = sim.served_files(created.execution_id)
    assert len(urls) == len(served) >= 1
    assert all(u.startswith(sim.url + "/_s3/") and "X-Amz-Signature=" in u for u in urls)
    with httpx.Client() as http:  # the URLs really are the simulator's pre-signed files
        assert [http.get(u).content for u in urls] == served

    page, token = client.list_executions_page(instance, workflow_id="daily_reach-t1")
    assert [e.execution_id for e in page] == [created.execution_id] and token is None
    listed = list(client.list_executions(instance, min_creation_time=since()))
    assert [e.execution_id for e in listed] == [created.execution_id]
    assert stat(sim, "token") == 1  # one token, cached across calls


def test_every_call_sends_the_four_amc_headers(sim, client, instance):
    seen: list[httpx.Request] = []
    client._http.event_hooks["request"].append(seen.append)
    client.list_executions_page(instance, min_creation_time=since())
    api = [r for r in seen if r.url.path.startswith("/amc/")]
    assert api
    for request in api:
        assert request.headers["Amazon-Advertising-API-ClientId"] == sim.config.client_id
        assert request.headers["Authorization"].startswith("Bearer Atza|")
        assert request.headers["Amazon-Advertising-API-AdvertiserId"] == ADVERTISER_ID
        assert request.headers["Amazon-Advertising-API-MarketplaceId"] == MARKETPLACE_ID
        assert request.headers["Accept"] == "application/json"
        assert "minCreationTime" in request.url.params and "Z" not in request.url.params["minCreationTime"]


def test_cancel_and_include_cancelled(sim, client, instance):
    sim.set_scenario("stuckwf", Scenario(kind="stuck_running"))
    created = client.create_execution(instance, body_for("stuckwf"))
    cancelled = client.cancel_execution(instance, created.execution_id)
    assert cancelled is not None and cancelled.status == "CANCELLED"
    assert client.get_execution(instance, created.execution_id).status == "CANCELLED"

    with pytest.raises(AmcError) as excinfo:  # cancel from a terminal state → 400, not retried
        client.cancel_execution(instance, created.execution_id)
    assert excinfo.value.status_code == 400 and excinfo.value.request_id
    assert "Cannot cancel" in excinfo.value.details
    assert stat(sim, "cancel") == 2

    hidden = list(client.list_executions(instance, workflow_id="stuckwf-t1", include_cancelled=False))
    shown = list(client.list_executions(instance, workflow_id="stuckwf-t1", include_cancelled=True))
    assert hidden == [] and [e.execution_id for e in shown] == [created.execution_id]


def test_execution_of_a_saved_workflow(sim, client, instance):
    # The client has no workflow CRUD (the pipeline runs ad hoc SQL): save it as a user would in AMC.
    api = Api(sim, instance.instance_id)
    try:
        saved = api.request("POST", "/workflows", json={"workflowId": "saved_reach", "sqlQuery": SQL})
        assert saved.status_code == 200, saved.text
    finally:
        api.close()

    saved_run = client.create_execution(instance, body_for("saved_reach", sql=None))
    assert saved_run.workflow_id == "saved_reach"
    assert [e["workflowExecutionId"] for e in sim.executions()] == [saved_run.execution_id]

    with pytest.raises(AmcError) as excinfo:  # AMC answers 404 for a workflow it does not have
        client.create_execution(instance, body_for("never_saved", sql=None))
    assert not isinstance(excinfo.value, AmbiguousCreateError) and excinfo.value.status_code == 404
    assert stat(sim, "create") == 2


def test_sql_compile_error_is_query_with_amc_details(sim, client, instance):
    sim.set_scenario("badsql", Scenario(kind="sql_error"))
    with pytest.raises(AmcError) as excinfo:
        client.create_execution(instance, body_for("badsql"))
    err = excinfo.value
    assert not isinstance(err, AmbiguousCreateError)
    assert err.error_type is ErrorType.QUERY and err.status_code == 400
    assert "Unable to compile" in err.details and err.request_id
    assert stat(sim, "create") == 1
    assert sim.executions() == []


def test_wrong_advertiser_is_permission_and_not_retried(sim, client):
    stranger = InstanceConfig(
        instance_id=INSTANCE_ID, advertiser_id="ENTITY9ZZ9ZZ99ZZZ9", marketplace_id=MARKETPLACE_ID
    )
    with pytest.raises(AmcError) as excinfo:
        client.list_executions_page(stranger, min_creation_time=since())
    assert excinfo.value.error_type is ErrorType.PERMISSION and excinfo.value.status_code == 403
    assert stat(sim, "list") == 1


def test_unknown_execution_is_404(sim, client, instance):
    with pytest.raises(AmcError) as excinfo:
        client.get_execution(instance, "00000000-0000-0000-0000-000000000000")
    assert excinfo.value.status_code == 404 and excinfo.value.request_id
    assert stat(sim, "get") == 1


def test_list_needs_a_filter(client, instance):
    with pytest.raises(ValueError, match="min_creation_time or workflow_id"):
        client.list_executions_page(instance)


# --------------------------------------------------------------------------------------------
# Faults on idempotent calls


@pytest.mark.parametrize(
    ("kind", "error_type", "status"),
    [
        ("error500", ErrorType.AMC_API, 500),
        ("timeout504", ErrorType.TIMEOUT, 504),
        ("drop", ErrorType.NETWORK, None),
    ],
)
def test_transient_get_failures_are_retried(sim, client, instance, retries, kind, error_type, status):
    created = client.create_execution(instance, body_for())
    sim.add_fault(Fault(kind=kind, endpoint="get", times=2))
    assert client.get_execution(instance, created.execution_id).execution_id == created.execution_id
    assert stat(sim, "get") == 3
    assert [(r[2].error_type, r[2].status_code) for r in retries] == [(error_type, status)] * 2


def test_throttle_honours_retry_after(sim, client, instance, retries):
    created = client.create_execution(instance, body_for())
    sim.add_fault(Fault(kind="throttle", endpoint="get", times=1, retry_after=1))
    client.get_execution(instance, created.execution_id)
    [(_, waited, cause)] = retries
    assert cause.status_code == 429 and cause.retry_after == 1.0
    # The scheduled wait is AMC's Retry-After, not the (tiny) exponential backoff of FAST_RETRY.
    assert waited == pytest.approx(1.0)
    assert stat(sim, "get") == 2


def test_retry_after_beyond_the_budget_gives_up_at_once(sim, instance):
    sim.add_fault(Fault(kind="throttle", endpoint="list", retry_after=30))
    policy = RetryPolicy(attempts=5, wait_initial=0.01, wait_max=0.05, budget_seconds=2.0, wait_jitter=0.01)
    with AmcClient(sim.url, credentials_for(sim), retry=policy) as client, pytest.raises(AmcError) as excinfo:
        client.list_executions_page(instance, min_creation_time=since())
    assert excinfo.value.error_type is ErrorType.RESOURCE and excinfo.value.retry_after == 30.0
    assert stat(sim, "list") == 1


def test_persistent_500_gives_up_after_the_attempts(sim, client, instance):
    sim.add_fault(Fault(kind="error500", endpoint="list"))
    with pytest.raises(AmcError) as excinfo:
        client.list_executions_page(instance, min_creation_time=since())
    assert excinfo.value.status_code == 500 and excinfo.value.error_type is ErrorType.AMC_API
    assert excinfo.value.request_id and "Internal Server Error" in excinfo.value.details
    assert stat(sim, "list") == FAST_RETRY.attempts


def test_slow_answer_times_out_and_is_retried(sim, instance, retries):
    with AmcClient(sim.url, credentials_for(sim), timeout=0.5, retry=FAST_RETRY) as client:
        created = client.create_execution(instance, body_for())
        sim.add_fault(Fault(kind="slow", endpoint="get", times=1, delay_seconds=1.5))
        assert client.get_execution(instance, created.execution_id).execution_id == created.execution_id
    assert [r[2].error_type for r in retries] == [ErrorType.TIMEOUT]


def test_cancel_put_is_retried(sim, client, instance):
    sim.set_scenario("stuckwf", Scenario(kind="stuck_pending"))
    created = client.create_execution(instance, body_for("stuckwf"))
    sim.add_fault(Fault(kind="error500", endpoint="cancel", times=1))
    assert client.cancel_execution(instance, created.execution_id).status == "CANCELLED"
    assert stat(sim, "cancel") == 2


def test_download_urls_are_retried(sim, client, instance):
    created = client.create_execution(instance, body_for())
    sim.advance_clock(60)
    sim.add_fault(Fault(kind="timeout504", endpoint="download_urls", times=1))
    assert client.get_download_urls(instance, created.execution_id)
    assert stat(sim, "download_urls") == 2


# --------------------------------------------------------------------------------------------
# Creates: never a duplicate


@pytest.mark.parametrize("kind", ["error500", "timeout504", "drop", "lost_create_response"])
def test_ambiguous_create_is_never_resent_and_listing_resolves_it(sim, client, instance, kind):
    body = body_for()
    sim.add_fault(Fault(kind=kind, endpoint="create", times=1))
    with pytest.raises(AmbiguousCreateError) as excinfo:
        client.create_execution(instance, body)
    assert stat(sim, "create") == 1  # the POST was not retried

    resolved = resolve_ambiguous(client, instance, body)
    executions = sim.executions(INSTANCE_ID)
    assert [e["workflowExecutionId"] for e in executions] == [resolved.execution_id]  # exactly one
    # lost_create_response: AMC created it, listing adopts it and no second POST is made.
    # The others failed before AMC created anything: listing finds none, one new create.
    assert stat(sim, "create") == (1 if kind == "lost_create_response" else 2)
    assert excinfo.value.error_type in (ErrorType.AMC_API, ErrorType.TIMEOUT, ErrorType.NETWORK)


def test_create_that_times_out_is_ambiguous_and_resolved_by_listing(sim, instance):
    body = body_for()
    sim.add_fault(Fault(kind="slow", endpoint="create", times=1, delay_seconds=1.5))
    with AmcClient(sim.url, credentials_for(sim), timeout=0.5, retry=FAST_RETRY) as client:
        with pytest.raises(AmbiguousCreateError) as excinfo:
            client.create_execution(instance, body)
        assert excinfo.value.error_type is ErrorType.TIMEOUT
        # Let the simulator finish handling the abandoned request (it answers after its delay; it
        # may or may not have created the execution, exactly like AMC), then resolve by listing.
        time.sleep(1.5)
        resolved = resolve_ambiguous(client, instance, body)
    assert [e["workflowExecutionId"] for e in sim.executions()] == [resolved.execution_id]
    assert stat(sim, "create") in (1, 2)


def test_throttled_create_is_retried_after_retry_after(sim, client, instance, retries):
    sim.add_fault(Fault(kind="throttle", endpoint="create", times=1, retry_after=1))
    created = client.create_execution(instance, body_for())
    assert [e["workflowExecutionId"] for e in sim.executions()] == [created.execution_id]
    assert stat(sim, "create") == 2
    assert retries[0][1] == pytest.approx(1.0)


@pytest.mark.parametrize("sim_overrides", [{"daily_quota": 1}])
def test_daily_quota_is_resource_not_ambiguous(sim, client, instance):
    client.create_execution(instance, body_for(day=1))
    with pytest.raises(AmcError) as excinfo:
        client.create_execution(instance, body_for(day=2))
    assert not isinstance(excinfo.value, AmbiguousCreateError)
    assert excinfo.value.error_type is ErrorType.RESOURCE and excinfo.value.status_code == 429
    assert excinfo.value.retry_after and excinfo.value.retry_after > 0
    assert len(sim.executions()) == 1


# --------------------------------------------------------------------------------------------
# Tokens


def test_revoked_token_refreshes_once_and_continues(sim, client, instance):
    created = client.create_execution(instance, body_for())
    sim.revoke_tokens()
    assert client.get_execution(instance, created.execution_id).execution_id == created.execution_id
    assert stat(sim, "token") == 2 and client.token_refreshes == 2
    assert stat(sim, "get") == 2  # one 401, one retry with the fresh token
    client.get_execution(instance, created.execution_id)
    assert stat(sim, "token") == 2


def test_token_expired_on_the_server_clock_refreshes_once(sim, client, instance):
    created = client.create_execution(instance, body_for())
    sim.advance_clock(4000)  # past the 3600 s token lifetime as AMC sees it
    assert client.get_execution(instance, created.execution_id).status == "SUCCEEDED"
    assert stat(sim, "token") == 2


def test_revoke_token_fault_mid_run(sim, client, instance):
    created = client.create_execution(instance, body_for())
    sim.add_fault(Fault(kind="revoke_token", endpoint="get", times=1))
    for _ in range(3):
        client.get_execution(instance, created.execution_id)
    assert stat(sim, "token") == 2


@pytest.mark.parametrize("sim_overrides", [{"token_ttl_seconds": 1}])
def test_short_lived_token_is_refreshed_before_it_expires(sim, client, instance):
    created = client.create_execution(instance, body_for())
    time.sleep(1.0)  # let the 1 s token reach its refresh point
    client.get_execution(instance, created.execution_id)
    assert stat(sim, "token") == 2
    assert stat(sim, "get") == 1  # refreshed ahead of time: no 401 round trip


def test_bad_refresh_token_is_an_authentication_error(sim, instance):
    creds = credentials_for(sim, refresh_token="not-the-refresh-token")
    with AmcClient(sim.url, creds, retry=FAST_RETRY) as client, pytest.raises(AmcAuthError) as excinfo:
        client.list_executions_page(instance, min_creation_time=since())
    err = excinfo.value
    assert err.error_type is ErrorType.AUTHENTICATION and err.status_code == 400
    assert "invalid_grant" in str(err) and "refresh_token" in err.details
    assert stat(sim, "token") == 1 and stat(sim, "list") == 0


def test_token_endpoint_failures_are_retried(sim, client, instance):
    sim.add_fault(Fault(kind="error500", endpoint="token", times=1))
    sim.add_fault(Fault(kind="drop", endpoint="token", times=1))
    client.list_executions_page(instance, min_creation_time=since())
    assert stat(sim, "token") == 3 and stat(sim, "list") == 1


def test_create_survives_a_token_endpoint_failure(sim, client, instance):
    # The POST was never sent, so retrying the whole call cannot duplicate anything.
    sim.add_fault(Fault(kind="error500", endpoint="token", times=1))
    created = client.create_execution(instance, body_for())
    assert [e["workflowExecutionId"] for e in sim.executions()] == [created.execution_id]
    assert stat(sim, "create") == 1


# --------------------------------------------------------------------------------------------
# Pages


def test_250_executions_come_in_three_pages(sim, client, instance):
    created = {client.create_execution(instance, body_for(token=f"n{i}")).execution_id for i in range(250)}
    assert len(created) == 250
    before = stat(sim, "list")
    page, token = client.list_executions_page(instance, min_creation_time=since(), limit=100)
    assert len(page) == 100 and token

    everything = list(client.list_executions(instance, min_creation_time=since(), limit=100))
    assert {e.execution_id for e in everything} == created and len(everything) == 250
    assert stat(sim, "list") - before == 1 + 3

    oldest_first = list(client.list_executions(instance, min_creation_time=since(), sort_ascending=True))
    times = [e.create_time for e in oldest_first]
    assert times == sorted(times)


def test_threads_share_one_token_refresh(sim, client, instance):
    from concurrent.futures import ThreadPoolExecutor

    ids = [client.create_execution(instance, body_for(token=f"th{i}")).execution_id for i in range(16)]
    sim.revoke_tokens()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: client.get_execution(instance, i), ids))
    assert [r.execution_id for r in results] == ids
    assert stat(sim, "token") == 2  # the first token, then one refresh for all eight threads
