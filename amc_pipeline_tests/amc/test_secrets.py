"""No secret in any exception text, repr or log line, whatever goes wrong.

Distinctive secret values are configured in the simulator; the test provokes auth failures, 5xx,
throttling past the budget, timeouts, dropped connections, ambiguous creates and connection
refusals, with every logger at DEBUG, then searches everything a human or Dagster could see.
"""

import asyncio
import logging
import pickle
import socket
import traceback
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from amc_pipeline.amc.auth import AmcCredentials
from amc_pipeline.amc.client import AmcClient, AsyncAmcClient, RetryPolicy, execution_body
from amc_pipeline.amc.errors import AmcError
from amc_pipeline.amc.redact import redact_text, redact_url
from amc_pipeline.defs.resources import AmcResource
from amc_pipeline.simulator import Fault
from amc_pipeline_tests.amc.conftest import credentials_for

CLIENT_SECRET = "S3CR3T-client-secret-Zq81xv"
REFRESH_TOKEN = "Atzr|S3CR3T-refresh-token-Kx93pl"
WRONG_SECRET = "S3CR3T-wrong-secret-Pp12qq"
WRONG_REFRESH = "Atzr|S3CR3T-wrong-refresh-Ll77mm"
SECRETS = [CLIENT_SECRET, REFRESH_TOKEN, WRONG_SECRET, WRONG_REFRESH]
SHORT_BUDGET = RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.02, budget_seconds=3.0, wait_jitter=0.01)


def _body():
    return execution_body(
        workflow_id="secretwf-1",
        sql="SELECT 1 FROM dsp_impressions",
        window_start=datetime(2024, 1, 1),
        window_end=datetime(2024, 1, 2),
        time_zone="UTC",
        timeout_seconds=900,
    )


def _since():
    return datetime.now(UTC) - timedelta(hours=1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _texts_of(exc: BaseException) -> list[str]:
    """Everything an error can show: str, repr, the formatted traceback with its chain, pickle."""
    return [
        str(exc),
        repr(exc),
        "".join(traceback.format_exception(exc)),
        str(getattr(exc, "details", "")),
        repr(pickle.loads(pickle.dumps(exc))),
    ]


def _record_texts(records: list[logging.LogRecord]) -> list[str]:
    out = []
    for record in records:
        out.append(record.getMessage())
        out.extend(repr(v) for v in vars(record).values())  # includes stamina's structured extras
        if record.exc_info:
            out.append("".join(traceback.format_exception(*record.exc_info)))
    return out


@pytest.mark.parametrize("sim_overrides", [{"client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN}])
def test_no_secret_leaks_from_any_failure(sim, instance, caplog, capfd, monkeypatch):
    caplog.set_level(logging.DEBUG)  # every logger: ours, httpx, httpcore, stamina
    texts: list[str] = []
    errors: list[AmcError] = []

    def expect_error(call):
        with pytest.raises(AmcError) as excinfo:
            call()
        errors.append(excinfo.value)
        texts.extend(_texts_of(excinfo.value))

    good = credentials_for(sim)
    with AmcClient(sim.url, good, timeout=0.5, retry=SHORT_BUDGET) as client:
        # Healthy calls first, so a real access token exists and could leak.
        created = client.create_execution(instance, _body())
        sim.advance_clock(60)
        urls = client.get_download_urls(instance, created.execution_id)
        access_token = client._core.tokens.token.value
        texts.extend([repr(client), str(client), repr(client._tokens), repr(client._core.tokens.token)])

        sim.add_fault(Fault(kind="error500", endpoint="get"))
        expect_error(lambda: client.get_execution(instance, created.execution_id))
        sim.clear_faults()
        sim.add_fault(Fault(kind="timeout504", endpoint="list"))
        expect_error(lambda: client.list_executions_page(instance, min_creation_time=_since()))
        sim.clear_faults()
        sim.add_fault(Fault(kind="throttle", endpoint="download_urls", retry_after=60))
        expect_error(lambda: client.get_download_urls(instance, created.execution_id))
        sim.clear_faults()
        sim.add_fault(Fault(kind="slow", endpoint="get", delay_seconds=1.0))
        expect_error(lambda: client.get_execution(instance, created.execution_id))
        sim.clear_faults()
        for kind in ("drop", "lost_create_response", "error500"):
            sim.add_fault(Fault(kind=kind, endpoint="create", times=1))
            expect_error(lambda: client.create_execution(instance, _body()))
        sim.add_fault(Fault(kind="error500", endpoint="token"))
        sim.revoke_tokens()
        expect_error(lambda: client.get_execution(instance, created.execution_id))
        sim.clear_faults()

    for bad in (
        credentials_for(sim, client_secret=WRONG_SECRET),
        credentials_for(sim, refresh_token=WRONG_REFRESH),
    ):
        texts.append(repr(bad))
        with AmcClient(sim.url, bad, retry=SHORT_BUDGET) as client:
            expect_error(lambda client=client: client.get_execution(instance, created.execution_id))

    # Nothing listening: connection refused, on the API and on the token endpoint.
    dead = f"http://127.0.0.1:{_free_port()}"
    refused = AmcCredentials(good.client_id, CLIENT_SECRET, REFRESH_TOKEN, dead + "/auth/o2/token?x=" + CLIENT_SECRET)
    with AmcClient(dead, refused, retry=SHORT_BUDGET) as client:
        expect_error(lambda: client.get_execution(instance, "x"))

    async def async_failures():
        async with AsyncAmcClient(
            sim.url, credentials_for(sim, refresh_token=WRONG_REFRESH), retry=SHORT_BUDGET
        ) as amc:
            with pytest.raises(AmcError) as excinfo:
                await amc.get_execution(instance, "x")
            texts.extend(_texts_of(excinfo.value))
            texts.append(repr(amc))

    asyncio.run(async_failures())

    # The resource, given EnvVars as Definitions should, and given plain strings by mistake.
    monkeypatch.setenv("AMC_TEST_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("AMC_TEST_REFRESH_TOKEN", REFRESH_TOKEN)
    for resource in (
        AmcResource(
            api_url=sim.url,
            token_url=sim.token_url,
            client_id=good.client_id,
            client_secret=dg.EnvVar("AMC_TEST_CLIENT_SECRET"),
            refresh_token=dg.EnvVar("AMC_TEST_REFRESH_TOKEN"),
        ),
        AmcResource(
            api_url=sim.url,
            token_url=sim.token_url,
            client_id="c",
            client_secret=CLIENT_SECRET,
            refresh_token=REFRESH_TOKEN,
        ),
    ):
        texts.extend([repr(resource), str(resource)])

    signatures = [u.split("X-Amz-Signature=")[1] for u in urls]
    texts.extend(redact_url(u) for u in urls)
    texts.extend(_record_texts(caplog.records))
    texts.append(caplog.text)
    captured = capfd.readouterr()  # stamina logs retries through structlog to stdout
    texts.extend([captured.out, captured.err])
    assert "stamina.retry_scheduled" in captured.out + captured.err + caplog.text

    assert errors and len(errors) >= 10
    everything = "\n".join(texts)
    for secret in [*SECRETS, access_token, *signatures]:
        assert secret not in everything
    assert "Bearer " not in everything
    # The errors still say what happened.
    assert any(e.error_type.value == "AUTHENTICATION" and "invalid_grant" in str(e) for e in errors)
    assert any(e.error_type.value == "TIMEOUT" for e in errors)


def test_redaction_helpers():
    url = "https://bucket.s3.amazonaws.com/a/part-0000.csv?X-Amz-Signature=abc123&X-Amz-Credential=AKIA%2F"
    assert redact_url(url) == "https://bucket.s3.amazonaws.com/a/part-0000.csv?***"
    assert redact_url("https://user:pw@host:8443/p?q=1#frag") == "https://host:8443/p?***"
    assert redact_url("https://host/p") == "https://host/p"
    text = (
        f"GET {url} failed; Authorization: Bearer Atza|tok-123; body client_secret=xyz&refresh_token=Atzr|r1 "
        f"and {CLIENT_SECRET}"
    )
    clean = redact_text(text, [CLIENT_SECRET])
    for secret in ("abc123", "AKIA", "Atza|tok-123", "xyz", "Atzr|r1", CLIENT_SECRET):
        assert secret not in clean
    assert "part-0000.csv" in clean


def test_credentials_repr_masks_secrets():
    creds = AmcCredentials("cid", CLIENT_SECRET, REFRESH_TOKEN, "https://api.amazon.com/auth/o2/token")
    for text in (repr(creds), str(creds), f"{creds}"):
        assert CLIENT_SECRET not in text and REFRESH_TOKEN not in text and "cid" in text
