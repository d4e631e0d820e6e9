"""HTTP client for the AMC reporting API: `AmcClient`, the blocking shell over `httpx.Client`.

The shell only does I/O: it interprets the steps of the shared, I/O-free ops (`amc.ops` over
`amc.core`) with `httpx.Client.send`, a thread lock around the token cache and stamina's sync retry
loop. `AsyncAmcClient` (in `amc.async_client`) does the same with asyncio; both are importable from
here, with the rest of the client's public names, so callers need one import path.

Retries, ambiguous creates and token refreshes are described in `amc.retry` and `amc.core`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar, Unpack

import httpx
import stamina

from amc_pipeline.amc import ops, workflows_api
from amc_pipeline.amc.async_client import AsyncAmcClient
from amc_pipeline.amc.auth import AmcCredentials, TokenManager, TokenState
from amc_pipeline.amc.bodies import execution_body
from amc_pipeline.amc.core import (
    InstanceLike,
    ListFilters,
    _Call,
    _Core,
    _DropToken,
    _Op,
    _Reply,
    _Send,
    _Shell,
    make_timeout,
)
from amc_pipeline.amc.errors import AmcError
from amc_pipeline.amc.models import AmcExecution
from amc_pipeline.amc.retry import RetryPolicy, is_transient, parse_retry_after
from amc_pipeline.amc.workflows_api import AmcScheduleRecord, SavedWorkflow

T = TypeVar("T")


class AmcClient(_Shell):
    """Blocking AMC client (thread-safe). Use as a context manager or call `close()`.

    `tokens` shares one token cache between clients of the same credentials (one refresh for all).
    """

    def __init__(
        self,
        api_url: str,
        credentials: AmcCredentials,
        *,
        timeout: float | httpx.Timeout = 30.0,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen dataclass, safe default
        tokens: TokenState | None = None,
    ) -> None:
        self._core = _Core(api_url, credentials, timeout, retry, tokens)
        self._http = httpx.Client(timeout=self._core.timeout, follow_redirects=False)
        self._tokens = TokenManager(self._core.tokens, self._fetch_token)

    # -- plumbing ---------------------------------------------------------------------------

    def __enter__(self) -> AmcClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _drive(self, op: _Op[T]) -> T:
        """Run an op: do the I/O each step asks for and answer it, return what the op returns."""
        answer: Any = None
        try:
            while True:
                step = op.send(answer)
                if isinstance(step, _Call):
                    answer = self._request(step)
                elif isinstance(step, _Send):
                    answer = self._send(step)
                elif isinstance(step, _DropToken):
                    answer = self._tokens.invalidate(step.token)
                else:
                    answer = self._tokens.get()
        except StopIteration as done:
            return done.value
        finally:
            op.close()

    def _request(self, call: _Call) -> _Reply:
        retry = self._core.retry
        for attempt in stamina.retry_context(on=retry.hook(call.label), **retry.stamina_kwargs()):
            with attempt:
                return self._drive(self._core.exchange(call))
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, step: _Send) -> httpx.Response:
        request = self._core.build_request(self._http, step)
        try:
            return self._http.send(request)
        except httpx.HTTPError as exc:
            raise self._core.transport_error(step.call, exc) from None

    def _fetch_token(self) -> str:
        return self._drive(self._core.op_fetch_token())

    # -- executions -------------------------------------------------------------------------

    def check_credentials(self) -> None:
        """Get an access token (cached or refreshed) without calling the API: `doctor` tells a refused
        account apart from an instance the account cannot reach. Raises AmcAuthError when refused."""
        self._tokens.get()

    def create_execution(self, instance: InstanceLike, body: dict[str, Any]) -> AmcExecution:
        """Create an execution. Raises AmbiguousCreateError when the outcome is unknown."""
        return self._drive(ops.create_execution(self._core, instance, body))

    def get_execution(self, instance: InstanceLike, execution_id: str) -> AmcExecution:
        return self._drive(ops.get_execution(self._core, instance, execution_id))

    def list_executions_page(
        self, instance: InstanceLike, *, next_token: str | None = None, **filters: Unpack[ListFilters]
    ) -> tuple[list[AmcExecution], str | None]:
        """One page (≤100) of executions and the next page's token (None on the last page).

        One page answers up to 100 statuses in one request: the cheap way to poll many executions.
        """
        return self._drive(ops.list_executions_page(self._core, instance, next_token=next_token, **filters))

    def list_executions(
        self, instance: InstanceLike, *, next_token: str | None = None, **filters: Unpack[ListFilters]
    ) -> Iterator[AmcExecution]:
        """Every execution matching the filters, fetching pages lazily."""
        pages = ops.Pages(self._core, instance, next_token, filters)
        while (op := pages.next_op()) is not None:
            yield from self._drive(op)

    def cancel_execution(self, instance: InstanceLike, execution_id: str) -> AmcExecution | None:
        return self._drive(ops.cancel_execution(self._core, instance, execution_id))

    def get_download_urls(self, instance: InstanceLike, execution_id: str) -> list[str]:
        """Fresh pre-signed result URLs (all of them). Never log or store them: use redact_url."""
        return self._drive(ops.get_download_urls(self._core, instance, execution_id))

    # -- saved workflows and schedules (amc-pipeline sync) ----------------------------------

    def get_workflow(self, instance: InstanceLike, workflow_id: str) -> SavedWorkflow | None:
        """The saved workflow, or None when AMC answers 404 (it does not exist, or is not visible)."""
        try:
            return self._drive(workflows_api.get_workflow(self._core, instance, workflow_id))
        except AmcError as exc:
            if exc.status_code == 404:
                return None
            raise

    def save_workflow(self, instance: InstanceLike, workflow: SavedWorkflow, *, create: bool) -> None:
        """Create (POST) or update (PUT) a saved workflow."""
        self._drive(workflows_api.put_workflow(self._core, instance, workflow, create=create))

    def list_schedules(self, instance: InstanceLike) -> Iterator[AmcScheduleRecord]:
        """Every schedule of the instance, page by page."""
        token: str | None = None
        seen: set[str] = set()
        while True:
            page, token = self._drive(workflows_api.list_schedules_page(self._core, instance, token))
            yield from page
            token = self._core.next_token("GET schedules (pages)", seen, token)
            if token is None:
                return

    def save_schedule(self, instance: InstanceLike, schedule: AmcScheduleRecord, *, create: bool) -> None:
        """Create (POST) or update (PUT) a schedule."""
        self._drive(workflows_api.put_schedule(self._core, instance, schedule, create=create))


__all__ = [
    "AmcClient",
    "AmcCredentials",
    "AsyncAmcClient",
    "InstanceLike",
    "RetryPolicy",
    "execution_body",
    "is_transient",
    "make_timeout",
    "parse_retry_after",
]
