"""The I/O-free core both AMC clients share: building calls, reading answers, the steps of an op.

Shape: `_Core` builds every request, parses every response and classifies every failure. Each
endpoint (in `ops`) is a small generator (an "op") that yields steps and returns the typed result:

- a `_Call` asks for one API call *with retries* and is answered with its `_Reply`;
- `exchange(call)`, the op for one *try* of a call, yields `NEED_TOKEN` (answer: an access token),
  `_Send` (answer: the `httpx.Response`) and `_DropToken` (the server refused that token).

`AmcClient` (sync) and `AsyncAmcClient` (async) each interpret these steps with their own
send/sleep/lock calls and nothing else, so behaviour cannot drift between the two.

Secrets: no URL with a query string, no token, no client secret ever reaches a message, a log line
or a repr. httpx exceptions are wrapped (their text is redacted, their chain suppressed).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypedDict, TypeVar
from urllib.parse import quote

import httpx

from amc_pipeline.amc.auth import AmcCredentials, TokenState
from amc_pipeline.amc.errors import AmbiguousCreateError, AmcError, ErrorType, classify_http, error_text
from amc_pipeline.amc.models import AmcExecution
from amc_pipeline.amc.redact import redact_text, redact_url
from amc_pipeline.amc.retry import RetryPolicy, parse_retry_after

# One logger for the whole client (core and shells), under the name it has always had.
logger = logging.getLogger("amc_pipeline.amc.client")

T = TypeVar("T")

USER_AGENT = "amc-pipeline/0.1 (+httpx)"


class InstanceLike(Protocol):
    """What the client needs from an instance (config.InstanceConfig satisfies it)."""

    instance_id: str
    advertiser_id: str
    marketplace_id: str


class ListFilters(TypedDict, total=False):
    """The filters of a list of executions (AMC requires `min_creation_time` or `workflow_id`)."""

    min_creation_time: datetime | None
    max_creation_time: datetime | None
    workflow_id: str | None
    include_cancelled: bool
    sort_ascending: bool
    limit: int


def make_timeout(timeout: float | httpx.Timeout) -> httpx.Timeout:
    """Explicit connect/read/write/pool timeouts: a hung AMC call must not hang a Dagster run."""
    if isinstance(timeout, httpx.Timeout):
        return timeout
    seconds = float(timeout)
    return httpx.Timeout(connect=min(10.0, seconds), read=seconds, write=seconds, pool=seconds)


# ---------------------------------------------------------------------------------------------
# Steps an op yields


@dataclass(frozen=True)
class _Call:
    """One HTTP request to make (with retries), described without I/O."""

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
    retry_after: float | None = None


@dataclass(frozen=True)
class _Send:
    """Send `call` once with bearer `token` (None for the token call); answered with the response."""

    call: _Call
    token: str | None


@dataclass(frozen=True)
class _DropToken:
    """The server refused `token`: forget it (unless it was already replaced)."""

    token: str | None


class _NeedToken:
    """Answered with a current access token (fetched if there is none)."""


NEED_TOKEN = _NeedToken()

_Step = _Call | _Send | _DropToken | _NeedToken
_Op = Generator[_Step, Any, T]

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
        tokens: TokenState | None = None,
    ) -> None:
        if not api_url.startswith(("http://", "https://")):
            raise ValueError(f"api_url must be an http(s) URL, got {redact_url(api_url)!r}")
        if tokens is not None and tokens.credentials != credentials:
            raise ValueError("the shared token cache was made for other credentials")
        self.api_url = api_url.rstrip("/")
        self.credentials = credentials
        self.timeout = make_timeout(timeout)
        self.retry = retry
        self.tokens = tokens if tokens is not None else TokenState(credentials)

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
        return _Call(method="POST", url=url, label=f"POST {redact_url(url)}", endpoint="token", form=self.tokens.form())

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

    def build_request(self, http: httpx.Client | httpx.AsyncClient, send: _Send) -> httpx.Request:
        call = send.call
        return http.build_request(
            call.method,
            call.url,
            params=call.params,
            json=call.json_body if call.json_body is not None else None,
            data=call.form,
            headers=self.headers(call, send.token),
        )

    def limits(self, concurrency: int) -> httpx.Limits:
        return httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    # -- one try of one call ----------------------------------------------------------------

    def exchange(self, call: _Call) -> _Op[_Reply]:
        """One try of `call`: a token (unless this is the token call), the send, the parse.

        A 401 means the cached token died early (revoked, clock skew): drop it, get a fresh one
        and send once more.
        """
        token = None if call.is_token else (yield NEED_TOKEN)
        response = yield _Send(call, token)
        if response.status_code == 401 and not call.is_token:
            logger.info("%s: HTTP 401, refreshing the access token once", call.label)
            yield _DropToken(token)
            token = yield NEED_TOKEN
            response = yield _Send(call, token)
        return self.parse(call, response)

    def op_fetch_token(self) -> _Op[str]:
        """One token request (inside the retry budget of the API call that needed the token)."""
        reply = yield from self.exchange(self.token_call())
        return self.tokens.accept(
            reply.status_code, reply.data, request_id=reply.request_id, retry_after=reply.retry_after
        )

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
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if call.is_token:
            # TokenState.accept classifies LWA's answers (invalid_grant → AmcAuthError).
            return _Reply(status, data if is_json else {"message": data}, request_id, retry_after)
        if 200 <= status < 300:
            if not is_json:
                content_type = response.headers.get("content-type", "no content type")
                raise self.shape_error(call, status, request_id, f"expected JSON, got {content_type}")
            return _Reply(status, data, request_id)
        details = redact_text(error_text(data) or f"HTTP {status} without details", self.secrets())
        error_type = classify_http(status, data if is_json else details)
        message = f"{call.label}: HTTP {status}: {details}"
        cls = AmcError
        if call.creates and status >= 500:
            logger.warning(
                "%s: HTTP %s (request_id=%s); outcome unknown, resolve by listing",
                call.label,
                status,
                request_id,
            )
            cls = AmbiguousCreateError
            message += "; the create may or may not have happened: list executions before retrying"
        raise cls(
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

    @staticmethod
    def next_token(label: str, seen: set[str], token: str | None) -> str | None:
        """Guard against a service that hands back the same page token forever."""
        if token is None:
            return None
        if token in seen:
            raise AmcError(f"{label}: pagination repeated a nextToken; stopping", error_type=ErrorType.AMC_API)
        seen.add(token)
        return token


class _Shell:
    """What both clients show of themselves: read-only facts of the core and a secret-free repr."""

    _core: _Core
    _http: httpx.Client | httpx.AsyncClient

    @property
    def api_url(self) -> str:
        return self._core.api_url

    @property
    def token_refreshes(self) -> int:
        """How many access tokens this client's token cache has fetched (for health metrics and tests)."""
        return self._core.tokens.refresh_count

    @property
    def closed(self) -> bool:
        return self._http.is_closed

    def _repr_extra(self) -> str:
        return ""

    def __repr__(self) -> str:
        core = self._core
        return (
            f"{type(self).__name__}(api_url={redact_url(core.api_url)!r}, "
            f"client_id={core.credentials.client_id!r}{self._repr_extra()})"
        )
