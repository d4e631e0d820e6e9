"""Answers the simulator never gives: HTML pages, lists instead of objects, missing fields, the
spec's wrapped shape. The peer is a tiny real HTTP server on 127.0.0.1 (stdlib http.server) that
serves canned bodies, so the client's real httpx transport is exercised; nothing is mocked.

Why: a proxy error page or an API change must surface as AmcError(AMC_API) with a clear message,
never as a KeyError deep in the monitor.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from amc_pipeline.amc.auth import AmcCredentials
from amc_pipeline.amc.client import AmcClient, RetryPolicy
from amc_pipeline.amc.errors import AmbiguousCreateError, AmcError, ErrorType
from amc_pipeline_tests.amc.conftest import INSTANCE

BASE = f"/amc/reporting/{INSTANCE.instance_id}/workflowExecutions"
RETRY = RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.02, budget_seconds=5.0, wait_jitter=0.01)
RECORD = {"workflowExecutionId": "11111111-2222-3333-4444-555555555555", "status": "RUNNING", "workflowId": "w-1"}


class CannedServer:
    """Serves `routes[(method, path)] = (status, content_type, body)`; counts requests per route."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], tuple[int, str, bytes]] = {}
        self.hits: dict[tuple[str, str], int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                path = self.path.split("?", 1)[0]
                key = (self.command, path)
                server.hits[key] = server.hits.get(key, 0) + 1
                if path == "/auth/o2/token":
                    status, ctype, body = (
                        200,
                        "application/json",
                        json.dumps(
                            {"access_token": "Atza|canned", "expires_in": 3600, "token_type": "bearer"}
                        ).encode(),
                    )
                else:
                    status, ctype, body = server.routes.get(key, (404, "application/json", b'{"code":"404"}'))
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("x-amz-request-id", "CANNED-REQ-1")
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def set(self, method: str, path: str, status: int, body, content_type: str = "application/json") -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.routes[(method, path)] = (status, content_type, raw)


@pytest.fixture
def canned():
    server = CannedServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        server.thread.join(timeout=5)


@pytest.fixture
def client(canned):
    creds = AmcCredentials("cid", "secret", "refresh", canned.url + "/auth/o2/token")
    with AmcClient(canned.url, creds, retry=RETRY) as amc:
        yield amc


def test_wrapped_and_flat_executions_are_both_accepted(canned, client):
    canned.set("GET", f"{BASE}/a", 200, {"workflowExecution": RECORD})
    canned.set("GET", f"{BASE}/b", 200, RECORD)
    for execution_id in ("a", "b"):
        execution = client.get_execution(INSTANCE, execution_id)
        assert execution.execution_id == RECORD["workflowExecutionId"] and execution.status == "RUNNING"
        assert execution.request_id == "CANNED-REQ-1"


@pytest.mark.parametrize(
    ("body", "content_type", "problem"),
    [
        (b"<html><body>Sign in</body></html>", "text/html", "expected JSON, got text/html"),
        ([RECORD], "application/json", "expected a JSON object"),
        ({"status": "RUNNING"}, "application/json", "without a workflowExecutionId"),
        ({"workflowExecutionId": "x"}, "application/json", "without a status"),
    ],
)
def test_unexpected_shapes_are_amc_api_errors(canned, client, body, content_type, problem):
    canned.set("GET", f"{BASE}/x", 200, body, content_type)
    with pytest.raises(AmcError) as excinfo:
        client.get_execution(INSTANCE, "x")
    err = excinfo.value
    assert err.error_type is ErrorType.AMC_API and err.status_code == 200
    assert problem in str(err) and err.request_id == "CANNED-REQ-1"
    assert canned.hits[("GET", f"{BASE}/x")] == 1  # a malformed 200 is not retried


def test_list_with_a_non_list_is_an_amc_api_error(canned, client):
    canned.set("GET", BASE, 200, {"executions": {"not": "a list"}})
    with pytest.raises(AmcError, match="expected 'executions' to be a list") as excinfo:
        client.list_executions_page(INSTANCE, workflow_id="w-1")
    assert excinfo.value.error_type is ErrorType.AMC_API


def test_list_without_executions_is_an_empty_page(canned, client):
    canned.set("GET", BASE, 200, {})
    assert client.list_executions_page(INSTANCE, workflow_id="w-1") == ([], None)


def test_download_urls_that_are_not_urls(canned, client):
    canned.set("GET", f"{BASE}/x/downloadUrls", 200, {"downloadUrls": [42]})
    with pytest.raises(AmcError, match="other than URLs"):
        client.get_download_urls(INSTANCE, "x")


def test_gateway_html_error_is_retried_then_classified(canned, client):
    canned.set("GET", f"{BASE}/x", 502, b"<html><h1>502 Bad Gateway</h1></html>", "text/html")
    with pytest.raises(AmcError) as excinfo:
        client.get_execution(INSTANCE, "x")
    assert excinfo.value.error_type is ErrorType.AMC_API and excinfo.value.status_code == 502
    assert "Bad Gateway" in excinfo.value.details
    assert canned.hits[("GET", f"{BASE}/x")] == RETRY.attempts


def test_unreadable_create_answer_is_ambiguous(canned, client):
    canned.set("POST", BASE, 200, b"<html>oops</html>", "text/html")
    with pytest.raises(AmbiguousCreateError):
        client.create_execution(INSTANCE, {"workflowId": "w"})
    assert canned.hits[("POST", BASE)] == 1


def test_cancel_with_an_empty_answer_returns_none(canned, client):
    canned.set("PUT", f"{BASE}/x", 200, b"", "application/json")
    assert client.cancel_execution(INSTANCE, "x") is None


def test_token_answer_without_access_token(canned):
    canned_token = CannedTokenless(canned)
    creds = AmcCredentials("cid", "secret", "refresh", canned_token.url)
    with AmcClient(canned.url, creds, retry=RETRY) as amc, pytest.raises(AmcError, match="without an access_token"):
        amc.get_execution(INSTANCE, "x")


class CannedTokenless:
    """Points the token URL at a canned route that answers 200 without an access_token."""

    def __init__(self, canned: CannedServer) -> None:
        canned.set("POST", "/other/token", 200, {"token_type": "bearer"})
        self.url = canned.url + "/other/token"
