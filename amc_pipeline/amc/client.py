"""HTTP client for the AMC reporting API (workflow executions and their download URLs).

Shape: one I/O-free core (`_Core`) builds every request, parses every response and classifies every
failure; each endpoint is a small generator ("operation") that yields the requests it needs and
returns the typed result. Two thin transports drive those generators: `AmcClient` over
`httpx.Client` and `AsyncAmcClient` over `httpx.AsyncClient`. Only the send/sleep/lock calls differ
between them, so behaviour cannot drift between the sync and async paths.

Retries (why these rules):
- Idempotent calls (GET, PUT, DELETE, the token refresh) are retried on 429 (honouring
  Retry-After), 500/502/503/504, timeouts and connection failures, with exponential backoff and
  jitter (stamina) inside a total time budget: AMC's limits move with load.
- A create (POST) is never resent after it may have reached AMC: a timeout, a dropped connection
  or a 5xx raise `AmbiguousCreateError`, which the caller resolves by listing executions. A 429,
  a refused connection or a failed token refresh mean nothing was created, so those are retried.
- A 401 refreshes the token once and repeats the call once.

Secrets: no URL with a query string, no token, no client secret ever reaches a message, a log line
or a repr. httpx exceptions are wrapped (their text is redacted, their chain suppressed).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import stamina

from amc_pipeline.amc.auth import AmcCredentials, AsyncTokenManager, TokenManager, TokenState
from amc_pipeline.amc.errors import (
    AmbiguousCreateError,
    AmcError,
    ErrorType,
    classify_http,
    error_text,
)
from amc_pipeline.amc.models import AmcExecution, format_window_time
from amc_pipeline.amc.redact import redact_text, redact_url

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Statuses worth another try of an idempotent call.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: AMC's bounds for workflowExecutionTimeoutSeconds.
MIN_EXECUTION_TIMEOUT = 900
MAX_EXECUTION_TIMEOUT = 86400
#: AMC's page size limit for list calls.
MAX_PAGE_SIZE = 100
USER_AGENT = "amc-pipeline/0.1 (+httpx)"


class InstanceLike(Protocol):
    """What the client needs from an instance (config.InstanceConfig satisfies it)."""

    instance_id: str
    advertiser_id: str
    marketplace_id: str


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for transient failures: `attempts` tries at most, within `budget_seconds` overall.

    Waits grow exponentially from `wait_initial` to `wait_max`, plus up to `wait_jitter` seconds
    of random jitter; a Retry-After from AMC replaces the computed wait (if it fits the budget).
    """

    attempts: int = 6
    wait_initial: float = 0.5
    wait_max: float = 30.0
    budget_seconds: float = 120.0
    wait_jitter: float = 1.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.budget_seconds <= 0:
            raise ValueError("RetryPolicy.budget_seconds must be positive")


def make_timeout(timeout: float | httpx.Timeout) -> httpx.Timeout:
    """Explicit connect/read/write/pool timeouts: a hung AMC call must not hang a Dagster run."""
    if isinstance(timeout, httpx.Timeout):
        return timeout
    seconds = float(timeout)
    return httpx.Timeout(connect=min(10.0, seconds), read=seconds, write=seconds, pool=seconds)


# ---------------------------------------------------------------------------------------------
# Request body helpers


def execution_body(
    *,
    workflow_id: str,
    sql: str | None = None,
    window_start: datetime,
    window_end: datetime,
    time_zone: str,
    timeout_seconds: int | float,
    parameter_values: dict[str, Any] | None = None,
    ignore_data_gaps: bool = False,
) -> dict[str, Any]:
    """The POST body of a workflow execution over an EXPLICIT time window.

    With `sql` the execution is ad hoc (`workflow: {workflowId, sqlQuery}`), without it it runs the
    saved workflow `workflow_id`. Window bounds are wall times in `time_zone`, formatted without `Z`
    or offset (AMC rejects or misreads those): naive datetimes are taken as already in `time_zone`,
    aware ones are converted to it first. The timeout is clamped to AMC's 900..86400 seconds.
    """
    if not workflow_id:
        raise ValueError("execution_body needs a workflow_id")
    zone = ZoneInfo(time_zone)

    def local(value: datetime) -> datetime:
        return value.astimezone(zone).replace(tzinfo=None) if value.tzinfo is not None else value

    start, end = local(window_start), local(window_end)
    if end <= start:
        raise ValueError(f"window end {end.isoformat()} is not after window start {start.isoformat()}")
    body: dict[str, Any] = {}
    if sql is not None and sql.strip():
        body["workflow"] = {"workflowId": workflow_id, "sqlQuery": sql}
    else:
        body["workflowId"] = workflow_id
    body.update(
        {
            "timeWindowType": "EXPLICIT",
            "timeWindowStart": format_window_time(start),
            "timeWindowEnd": format_window_time(end),
            "timeWindowTimeZone": time_zone,
            "workflowExecutionTimeoutSeconds": max(
                MIN_EXECUTION_TIMEOUT, min(MAX_EXECUTION_TIMEOUT, int(timeout_seconds))
            ),
            "parameterValues": dict(parameter_values or {}),
            "ignoreDataGaps": bool(ignore_data_gaps),
        }
    )
    return body


def _list_time(value: datetime) -> str:
    """minCreationTime as AMC wants it: UTC, no Z (naive values are taken as UTC)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return format_window_time(value)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (the header may be a number or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def is_transient(exc: BaseException) -> bool:
    """True for failures a later identical call may not meet (throttling, 5xx, network, timeouts)."""
    if not isinstance(exc, AmcError) or isinstance(exc, AmbiguousCreateError):
        return False
    if exc.status_code is None:
        return exc.error_type in (ErrorType.NETWORK, ErrorType.TIMEOUT)
    return exc.status_code in RETRY_STATUSES


# ---------------------------------------------------------------------------------------------
# The shared core


@dataclass(frozen=True)
class _Call:
    """One HTTP request to make, described without I/O."""

    method: str
    url: str
    label: str  # "GET /amc/reporting/…/workflowExecutions/…": safe for messages and logs
    endpoint: str  # short name for logs: create, get, list, cancel, download_urls, token
    instance: Any = None
    params: dict[str, str] | None = None
    json_body: Any = None
    form: dict[str, str] | None = field(default=None, repr=False)

    @property
    def is_token(self) -> bool:
        return self.endpoint == "token"

    @property
    def creates(self) -> bool:
        """A POST: resending it after it may have arrived could create a duplicate."""
        return self.method == "POST" and not self.is_token


@dataclass(frozen=True)
class _Reply:
    status_code: int
    data: Any
    request_id: str | None


# Network failures that happen before the request could reach the server: safe to resend anything.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


class _Core:
    """Request building, response parsing and error classification shared by both transports."""

    def __init__(
        self,
        api_url: str,
        credentials: AmcCredentials,
        timeout: float | httpx.Timeout,
        retry: RetryPolicy,
    ) -> None:
        if not api_url.startswith(("http://", "https://")):
            raise ValueError(f"api_url must be an http(s) URL, got {redact_url(api_url)!r}")
        self.api_url = api_url.rstrip("/")
        self.credentials = credentials
        self.timeout = make_timeout(timeout)
        self.retry = retry
        self.tokens = TokenState(credentials)

    # -- building ---------------------------------------------------------------------------

    def secrets(self) -> list[str]:
        return self.tokens.secrets()

    def path(self, instance: InstanceLike, *parts: str) -> str:
        segments = ["amc", "reporting", instance.instance_id, *parts]
        return "/" + "/".join(quote(str(s), safe="") for s in segments)

    def call(
        self,
        method: str,
        instance: InstanceLike,
        *parts: str,
        endpoint: str,
        params: dict[str, str] | None = None,
        json_body: Any = None,
    ) -> _Call:
        path = self.path(instance, *parts)
        return _Call(
            method=method,
            url=self.api_url + path,
            label=f"{method} {path}",
            endpoint=endpoint,
            instance=instance,
            params=params,
            json_body=json_body,
        )

    def token_call(self) -> _Call:
        url = self.credentials.token_url
        return _Call(
            method="POST",
            url=url,
            label=f"POST {redact_url(url)}",
            endpoint="token",
            form=self.tokens.form(),
        )

    def headers(self, call: _Call, token: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if call.is_token:
            return headers
        headers["Amazon-Advertising-API-ClientId"] = self.credentials.client_id
        headers["Authorization"] = f"Bearer {token}"
        if call.instance is not None:
            headers["Amazon-Advertising-API-AdvertiserId"] = call.instance.advertiser_id
            headers["Amazon-Advertising-API-MarketplaceId"] = call.instance.marketplace_id
        return headers

    def build_request(self, http: httpx.Client | httpx.AsyncClient, call: _Call, token: str | None) -> httpx.Request:
        return http.build_request(
            call.method,
            call.url,
            params=call.params,
            json=call.json_body if call.json_body is not None else None,
            data=call.form,
            headers=self.headers(call, token),
        )

    def limits(self, concurrency: int) -> httpx.Limits:
        return httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    # -- parsing ----------------------------------------------------------------------------

    @staticmethod
    def request_id(response: httpx.Response) -> str | None:
        return response.headers.get("x-amz-request-id") or response.headers.get("x-amz-rid")

    @staticmethod
    def decode(response: httpx.Response) -> tuple[Any, bool]:
        """The body as JSON if it is JSON, else its text; and whether it was JSON."""
        content = response.content
        if not content or not content.strip():
            return None, True
        try:
            return json.loads(content), True
        except (ValueError, UnicodeDecodeError):
            return response.content.decode("utf-8", errors="replace")[:500], False

    def transport_error(self, call: _Call, exc: httpx.HTTPError) -> AmcError:
        """Wrap an httpx failure: our type, redacted text, and ambiguity for creates."""
        timed_out = isinstance(exc, httpx.TimeoutException)
        error_type = ErrorType.TIMEOUT if timed_out else ErrorType.NETWORK
        what = "timed out" if timed_out else "connection failed"
        reason = redact_text(str(exc) or type(exc).__name__, self.secrets())
        message = f"{call.label}: {what} ({type(exc).__name__}: {reason})"
        if call.creates and not isinstance(exc, _NOT_SENT):
            logger.warning(
                "%s: outcome unknown after %s; resolve by listing before creating again",
                call.label,
                type(exc).__name__,
            )
            return AmbiguousCreateError(
                message + "; the create may or may not have happened: list executions before retrying",
                error_type=error_type,
            )
        return AmcError(message, error_type=error_type)

    def parse(self, call: _Call, response: httpx.Response) -> _Reply:
        """A successful reply, or the classified AmcError for this response."""
        request_id = self.request_id(response)
        status = response.status_code
        data, is_json = self.decode(response)
        logger.debug("%s -> HTTP %s (request_id=%s)", call.label, status, request_id)
        if call.is_token:
            # TokenState.accept classifies LWA's answers (invalid_grant → AmcAuthError).
            return _Reply(status, data if is_json else {"message": data}, request_id)
        if 200 <= status < 300:
            if not is_json:
                content_type = response.headers.get("content-type", "no content type")
                raise self.shape_error(call, status, request_id, f"expected JSON, got {content_type}")
            return _Reply(status, data, request_id)
        details = redact_text(error_text(data) or f"HTTP {status} without details", self.secrets())
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        error_type = classify_http(status, data if is_json else details)
        message = f"{call.label}: HTTP {status}: {details}"
        if call.creates and status >= 500:
            logger.warning(
                "%s: HTTP %s (request_id=%s); outcome unknown, resolve by listing",
                call.label,
                status,
                request_id,
            )
            raise AmbiguousCreateError(
                message + "; the create may or may not have happened: list executions before retrying",
                error_type=error_type,
                status_code=status,
                details=details,
                request_id=request_id,
                retry_after=retry_after,
            )
        raise AmcError(
            message,
            error_type=error_type,
            status_code=status,
            details=details,
            request_id=request_id,
            retry_after=retry_after,
        )

    def shape_error(self, call: _Call, status: int, request_id: str | None, problem: str) -> AmcError:
        """An answer we cannot read. For a create that is ambiguous: AMC did answer 2xx."""
        message = f"{call.label}: unexpected response shape: {problem}"
        cls = AmbiguousCreateError if call.creates else AmcError
        return cls(message, error_type=ErrorType.AMC_API, status_code=status, request_id=request_id)

    def accept_token(self, reply: _Reply, retry_after: float | None) -> str:
        return self.tokens.accept(reply.status_code, reply.data, request_id=reply.request_id, retry_after=retry_after)

    # -- retry decisions ----------------------------------------------------------------------

    def retry_kwargs(self) -> dict[str, Any]:
        policy = self.retry
        return {
            "attempts": policy.attempts,
            "timeout": policy.budget_seconds,
            "wait_initial": policy.wait_initial,
            "wait_max": policy.wait_max,
            "wait_jitter": policy.wait_jitter,
        }

    def retry_hook(self, call: _Call) -> Callable[[Exception], bool | float]:
        """stamina's `on=` hook: whether to retry, and for a 429 how long AMC asked us to wait."""
        started = time.monotonic()
        budget = self.retry.budget_seconds

        def hook(exc: Exception) -> bool | float:
            if not is_transient(exc):
                return False
            assert isinstance(exc, AmcError)
            if exc.retry_after is not None:
                remaining = budget - (time.monotonic() - started)
                if exc.retry_after > remaining:
                    logger.warning(
                        "%s: Retry-After %.1fs exceeds the remaining retry budget; giving up",
                        call.label,
                        exc.retry_after,
                    )
                    return False
                logger.info(
                    "%s: throttled, retrying after %.2fs (request_id=%s)",
                    call.label,
                    exc.retry_after,
                    exc.request_id,
                )
                return float(exc.retry_after)
            logger.info("%s: transient failure (%s), retrying", call.label, exc.error_type.value)
            return True

        return hook

    # -- results ----------------------------------------------------------------------------

    def execution(self, call: _Call, reply: _Reply) -> AmcExecution:
        try:
            return AmcExecution.from_json(reply.data, request_id=reply.request_id)
        except (ValueError, TypeError, AttributeError) as exc:
            raise self.shape_error(call, reply.status_code, reply.request_id, str(exc)) from None

    def object(self, call: _Call, reply: _Reply) -> dict[str, Any]:
        if reply.data is None:
            return {}
        if not isinstance(reply.data, dict):
            raise self.shape_error(
                call,
                reply.status_code,
                reply.request_id,
                f"expected a JSON object, got {type(reply.data).__name__}",
            )
        return reply.data

    def items(self, call: _Call, reply: _Reply, key: str) -> tuple[list[Any], str | None]:
        data = self.object(call, reply)
        items = data.get(key, [])
        if items is None:
            items = []
        if not isinstance(items, list):
            raise self.shape_error(
                call,
                reply.status_code,
                reply.request_id,
                f"expected '{key}' to be a list, got {type(items).__name__}",
            )
        token = data.get("nextToken")
        return items, token if isinstance(token, str) and token else None

    def next_token(self, call: _Call, seen: set[str], token: str | None) -> str | None:
        """Guard against a service that hands back the same page token forever."""
        if token is None:
            return None
        if token in seen:
            raise AmcError(f"{call.label}: pagination repeated a nextToken; stopping", error_type=ErrorType.AMC_API)
        seen.add(token)
        return token

    # -- operations: generators that yield calls and return results ----------------------------

    def op_create_execution(self, instance: InstanceLike, body: dict[str, Any]) -> _Op[AmcExecution]:
        if not isinstance(body, dict) or ("workflowId" in body) == ("workflow" in body):
            raise ValueError("execution body needs exactly one of 'workflowId' or 'workflow'")
        call = self.call("POST", instance, "workflowExecutions", endpoint="create", json_body=body)
        reply = yield call
        execution = self.execution(call, reply)
        logger.info(
            "created AMC execution %s on %s (request_id=%s)",
            execution.execution_id,
            instance.instance_id,
            execution.request_id,
        )
        return execution

    def op_get_execution(self, instance: InstanceLike, execution_id: str) -> _Op[AmcExecution]:
        call = self.call("GET", instance, "workflowExecutions", execution_id, endpoint="get")
        reply = yield call
        return self.execution(call, reply)

    def op_list_executions_page(
        self,
        instance: InstanceLike,
        *,
        min_creation_time: datetime | None = None,
        max_creation_time: datetime | None = None,
        workflow_id: str | None = None,
        include_cancelled: bool = True,
        sort_ascending: bool = False,
        limit: int = MAX_PAGE_SIZE,
        next_token: str | None = None,
    ) -> _Op[tuple[list[AmcExecution], str | None]]:
        if min_creation_time is None and not workflow_id:
            raise ValueError("listing executions needs min_creation_time or workflow_id (AMC requires one)")
        params: dict[str, str] = {
            "limit": str(max(1, min(MAX_PAGE_SIZE, int(limit)))),
            "includeCancelled": "true" if include_cancelled else "false",
            "sortAscending": "true" if sort_ascending else "false",
        }
        if min_creation_time is not None:
            params["minCreationTime"] = _list_time(min_creation_time)
        if max_creation_time is not None:
            # Not in the OpenAPI text, but in Amazon's recorded collection: bounds a creation-time slice,
            # so the poller can page several slices in parallel.
            params["maxCreationTime"] = _list_time(max_creation_time)
        if workflow_id:
            params["workflowId"] = workflow_id
        if next_token:
            params["nextToken"] = next_token
        call = self.call("GET", instance, "workflowExecutions", endpoint="list", params=params)
        reply = yield call
        records, token = self.items(call, reply, "executions")
        executions = [self.execution(call, _Reply(reply.status_code, r, reply.request_id)) for r in records]
        return executions, token

    def op_cancel_execution(self, instance: InstanceLike, execution_id: str) -> _Op[AmcExecution | None]:
        call = self.call(
            "PUT",
            instance,
            "workflowExecutions",
            execution_id,
            endpoint="cancel",
            json_body={"status": "CANCELLED"},
        )
        reply = yield call
        if reply.data in (None, {}, ""):
            return None
        return self.execution(call, reply)

    def op_get_download_urls(self, instance: InstanceLike, execution_id: str) -> _Op[list[str]]:
        urls: list[str] = []
        seen: set[str] = set()
        token: str | None = None
        while True:
            call = self.call(
                "GET",
                instance,
                "workflowExecutions",
                execution_id,
                "downloadUrls",
                endpoint="download_urls",
                params={"nextToken": token} if token else None,
            )
            reply = yield call
            page, token = self.items(call, reply, "downloadUrls")
            if not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in page):
                raise self.shape_error(
                    call,
                    reply.status_code,
                    reply.request_id,
                    "'downloadUrls' holds something other than URLs",
                )
            urls.extend(page)
            token = self.next_token(call, seen, token)
            if token is None:
                return urls



_Op = Generator[_Call, _Reply, T]


def _repr(cls_name: str, core: _Core, extra: str = "") -> str:
    return f"{cls_name}(api_url={redact_url(core.api_url)!r}, client_id={core.credentials.client_id!r}{extra})"


# ---------------------------------------------------------------------------------------------
# Sync transport


class AmcClient:
    """Blocking AMC client (thread-safe). Use as a context manager or call `close()`."""

    def __init__(
        self,
        api_url: str,
        credentials: AmcCredentials,
        *,
        timeout: float | httpx.Timeout = 30.0,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen dataclass, safe default
    ) -> None:
        self._core = _Core(api_url, credentials, timeout, retry)
        self._http = httpx.Client(timeout=self._core.timeout, follow_redirects=False)
        self._tokens = TokenManager(self._core.tokens, self._fetch_token)

    # -- plumbing ---------------------------------------------------------------------------

    def __enter__(self) -> AmcClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return _repr("AmcClient", self._core)

    @property
    def api_url(self) -> str:
        return self._core.api_url

    @property
    def token_refreshes(self) -> int:
        """How many access tokens this client has fetched (for health metrics and tests)."""
        return self._core.tokens.refresh_count

    def _send(self, call: _Call, token: str | None) -> httpx.Response:
        request = self._core.build_request(self._http, call, token)
        try:
            return self._http.send(request)
        except httpx.HTTPError as exc:
            raise self._core.transport_error(call, exc) from None

    def _fetch_token(self) -> str:
        call = self._core.token_call()
        response = self._send(call, None)
        reply = self._core.parse(call, response)
        return self._core.accept_token(reply, parse_retry_after(response.headers.get("retry-after")))

    def _attempt(self, call: _Call) -> _Reply:
        token = self._tokens.get()
        response = self._send(call, token)
        if response.status_code == 401:
            logger.info("%s: HTTP 401, refreshing the access token once", call.label)
            self._tokens.invalidate(token)
            token = self._tokens.get()
            response = self._send(call, token)
        return self._core.parse(call, response)

    def _request(self, call: _Call) -> _Reply:
        for attempt in stamina.retry_context(on=self._core.retry_hook(call), **self._core.retry_kwargs()):
            with attempt:
                return self._attempt(call)
        raise AssertionError("unreachable")  # pragma: no cover

    def _run(self, op: _Op[T]) -> T:
        try:
            call = next(op)
            while True:
                call = op.send(self._request(call))
        except StopIteration as done:
            return done.value
        finally:
            op.close()

    # -- executions -------------------------------------------------------------------------

    def create_execution(self, instance: InstanceLike, body: dict[str, Any]) -> AmcExecution:
        """Create an execution. Raises AmbiguousCreateError when the outcome is unknown."""
        return self._run(self._core.op_create_execution(instance, body))

    def get_execution(self, instance: InstanceLike, execution_id: str) -> AmcExecution:
        return self._run(self._core.op_get_execution(instance, execution_id))

    def list_executions_page(
        self,
        instance: InstanceLike,
        *,
        min_creation_time: datetime | None = None,
        max_creation_time: datetime | None = None,
        workflow_id: str | None = None,
        include_cancelled: bool = True,
        sort_ascending: bool = False,
        limit: int = MAX_PAGE_SIZE,
        next_token: str | None = None,
    ) -> tuple[list[AmcExecution], str | None]:
        """One page (≤100) of executions and the next page's token (None on the last page).

        One page answers up to 100 statuses in one request: the cheap way to poll many executions.
        """
        return self._run(
            self._core.op_list_executions_page(
                instance,
                min_creation_time=min_creation_time,
                max_creation_time=max_creation_time,
                workflow_id=workflow_id,
                include_cancelled=include_cancelled,
                sort_ascending=sort_ascending,
                limit=limit,
                next_token=next_token,
            )
        )

    def list_executions(
        self,
        instance: InstanceLike,
        *,
        min_creation_time: datetime | None = None,
        max_creation_time: datetime | None = None,
        workflow_id: str | None = None,
        include_cancelled: bool = True,
        sort_ascending: bool = False,
        limit: int = MAX_PAGE_SIZE,
        next_token: str | None = None,
    ) -> Iterator[AmcExecution]:
        """Every execution matching the filters, fetching pages lazily."""
        kwargs = dict(
            min_creation_time=min_creation_time,
            max_creation_time=max_creation_time,
            workflow_id=workflow_id,
            include_cancelled=include_cancelled,
            sort_ascending=sort_ascending,
            limit=limit,
        )
        token = next_token
        seen: set[str] = set()
        while True:
            page, token = self.list_executions_page(instance, next_token=token, **kwargs)
            yield from page
            token = self._core.next_token(_LIST_LABEL, seen, token)
            if token is None:
                return

    def cancel_execution(self, instance: InstanceLike, execution_id: str) -> AmcExecution | None:
        return self._run(self._core.op_cancel_execution(instance, execution_id))

    def get_download_urls(self, instance: InstanceLike, execution_id: str) -> list[str]:
        """Fresh pre-signed result URLs (all of them). Never log or store them: use redact_url."""
        return self._run(self._core.op_get_download_urls(instance, execution_id))



#: Label for the multi-page guard of list_executions (no request of its own).
_LIST_LABEL = _Call(method="GET", url="", label="GET workflowExecutions (pages)", endpoint="list")


# ---------------------------------------------------------------------------------------------
# Async transport


class AsyncAmcClient:
    """asyncio AMC client for polling many executions at once.

    At most `concurrency` requests are in flight (the httpx pool has that many connections and a
    semaphore queues the rest, so waiting for a slot never counts against the pool timeout). Use
    it inside one event loop: `async with AsyncAmcClient(...) as client:`.
    """

    def __init__(
        self,
        api_url: str,
        credentials: AmcCredentials,
        *,
        concurrency: int = 10,
        timeout: float | httpx.Timeout = 30.0,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen dataclass, safe default
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._core = _Core(api_url, credentials, timeout, retry)
        self.concurrency = concurrency
        self._http = httpx.AsyncClient(
            timeout=self._core.timeout, limits=self._core.limits(concurrency), follow_redirects=False
        )
        self._tokens = AsyncTokenManager(self._core.tokens, self._fetch_token)
        self._semaphores: dict[int, asyncio.Semaphore] = {}

    async def __aenter__(self) -> AsyncAmcClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    def __repr__(self) -> str:
        return _repr("AsyncAmcClient", self._core, f", concurrency={self.concurrency}")

    @property
    def api_url(self) -> str:
        return self._core.api_url

    @property
    def token_refreshes(self) -> int:
        return self._core.tokens.refresh_count

    def _slot(self) -> asyncio.Semaphore:
        loop_id = id(asyncio.get_running_loop())
        semaphore = self._semaphores.get(loop_id)
        if semaphore is None:
            semaphore = asyncio.Semaphore(self.concurrency)
            self._semaphores = {loop_id: semaphore}
        return semaphore

    async def _send(self, call: _Call, token: str | None) -> httpx.Response:
        request = self._core.build_request(self._http, call, token)
        async with self._slot():
            try:
                return await self._http.send(request)
            except httpx.HTTPError as exc:
                raise self._core.transport_error(call, exc) from None

    async def _fetch_token(self) -> str:
        call = self._core.token_call()
        response = await self._send(call, None)
        reply = self._core.parse(call, response)
        return self._core.accept_token(reply, parse_retry_after(response.headers.get("retry-after")))

    async def _attempt(self, call: _Call) -> _Reply:
        token = await self._tokens.get()
        response = await self._send(call, token)
        if response.status_code == 401:
            logger.info("%s: HTTP 401, refreshing the access token once", call.label)
            await self._tokens.invalidate(token)
            token = await self._tokens.get()
            response = await self._send(call, token)
        return self._core.parse(call, response)

    async def _request(self, call: _Call) -> _Reply:
        async for attempt in stamina.retry_context(on=self._core.retry_hook(call), **self._core.retry_kwargs()):
            with attempt:
                return await self._attempt(call)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _run(self, op: _Op[T]) -> T:
        try:
            call = next(op)
            while True:
                call = op.send(await self._request(call))
        except StopIteration as done:
            return done.value
        finally:
            op.close()

    async def create_execution(self, instance: InstanceLike, body: dict[str, Any]) -> AmcExecution:
        return await self._run(self._core.op_create_execution(instance, body))

    async def get_execution(self, instance: InstanceLike, execution_id: str) -> AmcExecution:
        return await self._run(self._core.op_get_execution(instance, execution_id))

    async def list_executions_page(
        self,
        instance: InstanceLike,
        *,
        min_creation_time: datetime | None = None,
        max_creation_time: datetime | None = None,
        workflow_id: str | None = None,
        include_cancelled: bool = True,
        sort_ascending: bool = False,
        limit: int = MAX_PAGE_SIZE,
        next_token: str | None = None,
    ) -> tuple[list[AmcExecution], str | None]:
        return await self._run(
            self._core.op_list_executions_page(
                instance,
                min_creation_time=min_creation_time,
                max_creation_time=max_creation_time,
                workflow_id=workflow_id,
                include_cancelled=include_cancelled,
                sort_ascending=sort_ascending,
                limit=limit,
                next_token=next_token,
            )
        )

    async def list_executions(
        self,
        instance: InstanceLike,
        *,
        min_creation_time: datetime | None = None,
        max_creation_time: datetime | None = None,
        workflow_id: str | None = None,
        include_cancelled: bool = True,
        sort_ascending: bool = False,
        limit: int = MAX_PAGE_SIZE,
        next_token: str | None = None,
    ) -> AsyncIterator[AmcExecution]:
        kwargs = dict(
            min_creation_time=min_creation_time,
            max_creation_time=max_creation_time,
            workflow_id=workflow_id,
            include_cancelled=include_cancelled,
            sort_ascending=sort_ascending,
            limit=limit,
        )
        token = next_token
        seen: set[str] = set()
        while True:
            page, token = await self.list_executions_page(instance, next_token=token, **kwargs)
            for execution in page:
                yield execution
            token = self._core.next_token(_LIST_LABEL, seen, token)
            if token is None:
                return

    async def cancel_execution(self, instance: InstanceLike, execution_id: str) -> AmcExecution | None:
        return await self._run(self._core.op_cancel_execution(instance, execution_id))

    async def get_download_urls(self, instance: InstanceLike, execution_id: str) -> list[str]:
        return await self._run(self._core.op_get_download_urls(instance, execution_id))



__all__ = [
    "AmcClient",
    "AmcCredentials",
    "AsyncAmcClient",
    "InstanceLike",
    "RetryPolicy",
    "execution_body",
    "is_transient",
    "parse_retry_after",
]
