"""`AsyncAmcClient`: the asyncio shell over `httpx.AsyncClient`, for polling many executions at once.

Like `AmcClient` it only does I/O: it interprets the steps of the same I/O-free ops (`amc.ops` over
`amc.core`) with awaited sends, an asyncio lock around the token cache and stamina's async retry
loop. What it adds is the concurrency bound (a pool of `concurrency` connections and a semaphore
in front of it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypeVar, Unpack

import httpx
import stamina

from amc_pipeline.amc import ops
from amc_pipeline.amc.auth import AmcCredentials, AsyncTokenManager, TokenState
from amc_pipeline.amc.core import InstanceLike, ListFilters, _Call, _Core, _DropToken, _Op, _Reply, _Send, _Shell
from amc_pipeline.amc.models import AmcExecution
from amc_pipeline.amc.retry import RetryPolicy

T = TypeVar("T")


class AsyncAmcClient(_Shell):
    """asyncio AMC client for polling many executions at once.

    At most `concurrency` requests are in flight (the httpx pool has that many connections and a
    semaphore queues the rest, so waiting for a slot never counts against the pool timeout). Use
    it inside one event loop: `async with AsyncAmcClient(...) as client:`. `tokens` shares one
    token cache with other clients of the same credentials.
    """

    def __init__(
        self,
        api_url: str,
        credentials: AmcCredentials,
        *,
        concurrency: int = 10,
        timeout: float | httpx.Timeout = 30.0,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen dataclass, safe default
        tokens: TokenState | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._core = _Core(api_url, credentials, timeout, retry, tokens)
        self.concurrency = concurrency
        self._http = httpx.AsyncClient(
            timeout=self._core.timeout, limits=self._core.limits(concurrency), follow_redirects=False
        )
        self._tokens = AsyncTokenManager(self._core.tokens, self._fetch_token)
        self._semaphores: dict[int, asyncio.Semaphore] = {}

    # -- plumbing ---------------------------------------------------------------------------

    async def __aenter__(self) -> AsyncAmcClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    def _repr_extra(self) -> str:
        return f", concurrency={self.concurrency}"

    def _slot(self) -> asyncio.Semaphore:
        loop_id = id(asyncio.get_running_loop())
        semaphore = self._semaphores.get(loop_id)
        if semaphore is None:
            semaphore = asyncio.Semaphore(self.concurrency)
            self._semaphores = {loop_id: semaphore}
        return semaphore

    async def _drive(self, op: _Op[T]) -> T:
        """Run an op: do the I/O each step asks for and answer it, return what the op returns."""
        answer: Any = None
        try:
            while True:
                step = op.send(answer)
                if isinstance(step, _Call):
                    answer = await self._request(step)
                elif isinstance(step, _Send):
                    answer = await self._send(step)
                elif isinstance(step, _DropToken):
                    answer = await self._tokens.invalidate(step.token)
                else:
                    answer = await self._tokens.get()
        except StopIteration as done:
            return done.value
        finally:
            op.close()

    async def _request(self, call: _Call) -> _Reply:
        retry = self._core.retry
        async for attempt in stamina.retry_context(on=retry.hook(call.label), **retry.stamina_kwargs()):
            with attempt:
                return await self._drive(self._core.exchange(call))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(self, step: _Send) -> httpx.Response:
        request = self._core.build_request(self._http, step)
        async with self._slot():
            try:
                return await self._http.send(request)
            except httpx.HTTPError as exc:
                raise self._core.transport_error(step.call, exc) from None

    async def _fetch_token(self) -> str:
        return await self._drive(self._core.op_fetch_token())

    # -- executions -------------------------------------------------------------------------

    async def create_execution(self, instance: InstanceLike, body: dict[str, Any]) -> AmcExecution:
        """Create an execution. Raises AmbiguousCreateError when the outcome is unknown."""
        return await self._drive(ops.create_execution(self._core, instance, body))

    async def get_execution(self, instance: InstanceLike, execution_id: str) -> AmcExecution:
        return await self._drive(ops.get_execution(self._core, instance, execution_id))

    async def list_executions_page(
        self, instance: InstanceLike, *, next_token: str | None = None, **filters: Unpack[ListFilters]
    ) -> tuple[list[AmcExecution], str | None]:
        """One page (≤100) of executions and the next page's token (None on the last page)."""
        return await self._drive(ops.list_executions_page(self._core, instance, next_token=next_token, **filters))

    async def list_executions(
        self, instance: InstanceLike, *, next_token: str | None = None, **filters: Unpack[ListFilters]
    ) -> AsyncIterator[AmcExecution]:
        """Every execution matching the filters, fetching pages lazily."""
        pages = ops.Pages(self._core, instance, next_token, filters)
        while (op := pages.next_op()) is not None:
            for execution in await self._drive(op):
                yield execution

    async def cancel_execution(self, instance: InstanceLike, execution_id: str) -> AmcExecution | None:
        return await self._drive(ops.cancel_execution(self._core, instance, execution_id))

    async def get_download_urls(self, instance: InstanceLike, execution_id: str) -> list[str]:
        """Fresh pre-signed result URLs (all of them). Never log or store them: use redact_url."""
        return await self._drive(ops.get_download_urls(self._core, instance, execution_id))


__all__ = ["AsyncAmcClient"]
