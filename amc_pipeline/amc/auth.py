"""Login with Amazon (LWA) refresh-token flow: credentials, token parsing and token caching.

Why it looks like this:
- The access token lives an hour; fetching one per call would double the request count and hit
  LWA's own throttling, so it is cached and refreshed a little before expiry (`margin_seconds`).
- A 401 from the API means the cached token died early (revoked, clock skew): the client calls
  `invalidate(token)` and gets a fresh one once. Invalidating by value means a burst of threads
  that all saw the same 401 refresh only once between them.
- The parsing here is I/O free; the HTTP call itself is made by the client's transport (sync or
  async), inside the same retry loop and time budget as the API call that needed the token. The
  two managers differ only in their lock (threading vs asyncio).
- A refusal (LWA answers 400/401/403: a revoked or wrong refresh token) is remembered for the life of
  the token cache (a run): every later call for that account fails at once with the same error
  instead of asking LWA again, so a dead account costs one token request per run, not one per call.
- Secrets never appear in reprs or messages: `AmcCredentials` and `AccessToken` mask them, and
  LWA's error text is passed through `redact_text` with the secret values before it is raised.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from amc_pipeline.amc.errors import AmcAuthError, AmcError, ErrorType, classify_http, error_text
from amc_pipeline.amc.redact import mask, redact_text

#: Refresh this long before the token's announced expiry.
DEFAULT_MARGIN_SECONDS = 60.0


@dataclass(frozen=True)
class AmcCredentials:
    """What LWA needs to mint access tokens. The repr shows the client id only."""

    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)
    token_url: str = "https://api.amazon.com/auth/o2/token"

    def __repr__(self) -> str:
        return (
            f"AmcCredentials(client_id={self.client_id!r}, client_secret={mask(self.client_secret)}, "
            f"refresh_token={mask(self.refresh_token)}, token_url={self.token_url!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True)
class AccessToken:
    """A bearer token and when (monotonic clock) to stop using it."""

    value: str = field(repr=False)
    refresh_at: float
    expires_in: float

    def __repr__(self) -> str:
        return f"AccessToken(value={mask(self.value)}, expires_in={self.expires_in})"

    def fresh(self, now: float) -> bool:
        return now < self.refresh_at


class TokenState:
    """The I/O-free part of the token flow, shared by the sync and async managers."""

    def __init__(
        self,
        credentials: AmcCredentials,
        *,
        margin_seconds: float = DEFAULT_MARGIN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.credentials = credentials
        self.margin_seconds = margin_seconds
        self.clock = clock
        self.token: AccessToken | None = None
        # LWA may hand back a new refresh token; use the newest one we were given.
        self.refresh_token = credentials.refresh_token
        self.refresh_count = 0
        #: LWA's refusal of this credential set, if it refused it (see the module docstring).
        self.refused: AmcAuthError | None = None
        self._seen_secrets: list[str] = []

    def secrets(self) -> list[str]:
        """Every secret value this process knows, for redaction of text we did not write."""
        values = [self.credentials.client_secret, self.credentials.refresh_token, self.refresh_token]
        if self.token is not None:
            values.append(self.token.value)
        values.extend(self._seen_secrets)
        return [v for v in values if v]

    def current(self) -> str | None:
        token = self.token
        if token is not None and token.fresh(self.clock()):
            return token.value
        return None

    def form(self) -> dict[str, str]:
        """The refresh-token grant, sent form-encoded in the POST body (never in the URL)."""
        return {
            "grant_type": "refresh_token",
            "client_id": self.credentials.client_id,
            "client_secret": self.credentials.client_secret,
            "refresh_token": self.refresh_token,
        }

    def invalidate(self, value: str | None) -> None:
        """Forget the token if it is still the one that was refused (not one refreshed since)."""
        if self.token is not None and (value is None or self.token.value == value):
            self.token = None

    def accept(
        self,
        status_code: int,
        payload: Any,
        *,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> str:
        """Store the token from LWA's answer, or raise the classified error."""
        if status_code in (400, 401, 403):
            parts = [payload.get("error"), payload.get("error_description")] if isinstance(payload, dict) else []
            text = ": ".join(p for p in parts if isinstance(p, str) and p) or error_text(payload)
            text = redact_text(text or "no reason given", self.secrets())
            self.refused = AmcAuthError(
                f"Login with Amazon refused the token refresh for client {self.credentials.client_id} "
                f"(HTTP {status_code}): {text}",
                error_type=ErrorType.AUTHENTICATION,
                status_code=status_code,
                details=text,
                request_id=request_id,
            )
            raise self.refused
        if status_code >= 300:
            text = redact_text(error_text(payload) or "no reason given", self.secrets())
            raise AmcError(
                f"Login with Amazon token endpoint failed (HTTP {status_code}): {text}",
                error_type=classify_http(status_code, payload),
                status_code=status_code,
                details=text,
                request_id=request_id,
                retry_after=retry_after,
            )
        if not isinstance(payload, dict) or not isinstance(payload.get("access_token"), str):
            shape = f"keys {sorted(map(str, payload))}" if isinstance(payload, dict) else type(payload).__name__
            raise AmcError(
                f"Login with Amazon answered without an access_token (got {shape})",
                error_type=ErrorType.AMC_API,
                status_code=status_code,
                request_id=request_id,
            )
        value = payload["access_token"]
        try:
            expires_in = float(payload.get("expires_in") or 3600)
        except (TypeError, ValueError):
            expires_in = 3600.0
        # Short-lived tokens (tests, odd deployments) get a proportionate margin, not a full minute.
        margin = min(self.margin_seconds, expires_in * 0.1)
        self.token = AccessToken(value=value, refresh_at=self.clock() + expires_in - margin, expires_in=expires_in)
        new_refresh = payload.get("refresh_token")
        if isinstance(new_refresh, str) and new_refresh and new_refresh != self.refresh_token:
            self._seen_secrets.append(self.refresh_token)
            self.refresh_token = new_refresh
        self.refresh_count += 1
        return value


class TokenManager:
    """Thread-safe token cache for the sync client. `fetch` performs one token request."""

    def __init__(self, state: TokenState, fetch: Callable[[], str]) -> None:
        self.state = state
        self._fetch = fetch
        self._lock = threading.Lock()

    def get(self) -> str:
        value = self.state.current()
        if value is not None:
            return value
        with self._lock:
            value = self.state.current()
            if value is None:
                if self.state.refused is not None:
                    raise self.state.refused
                value = self._fetch()
            return value

    def invalidate(self, value: str | None) -> None:
        with self._lock:
            self.state.invalidate(value)

    def __repr__(self) -> str:
        return f"TokenManager(token={self.state.token!r})"


class AsyncTokenManager:
    """asyncio-safe token cache for the async client: one refresh however many tasks need it."""

    def __init__(self, state: TokenState, fetch: Callable[[], Awaitable[str]]) -> None:
        self.state = state
        self._fetch = fetch
        self._locks: dict[int, asyncio.Lock] = {}

    def _lock(self) -> asyncio.Lock:
        # asyncio.Lock binds to the loop that first waits on it; keep one per running loop so the
        # manager survives being used from successive asyncio.run() calls.
        loop_id = id(asyncio.get_running_loop())
        lock = self._locks.get(loop_id)
        if lock is None:
            self._locks = {loop_id: asyncio.Lock()}
            lock = self._locks[loop_id]
        return lock

    async def get(self) -> str:
        value = self.state.current()
        if value is not None:
            return value
        async with self._lock():
            value = self.state.current()
            if value is None:
                if self.state.refused is not None:
                    raise self.state.refused
                value = await self._fetch()
            return value

    async def invalidate(self, value: str | None) -> None:
        async with self._lock():
            self.state.invalidate(value)

    def __repr__(self) -> str:
        return f"AsyncTokenManager(token={self.state.token!r})"
