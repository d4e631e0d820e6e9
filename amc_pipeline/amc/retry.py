"""When a failed AMC call is tried again, and how long the client waits first.

Why these rules:
- Idempotent calls (GET, PUT, DELETE, the token refresh) are retried on 429 (honouring
  Retry-After), 500/502/503/504, timeouts and connection failures, with exponential backoff and
  jitter (stamina) inside a total time budget: AMC's limits move with load.
- A create (POST) is never resent after it may have reached AMC: its failures are raised as
  `AmbiguousCreateError`, which `is_transient` never retries; the caller resolves it by listing
  executions. A 429, a refused connection or a failed token refresh mean nothing was created, so
  those are retried.

The decisions are here, I/O free; the sync and async clients only run stamina's loop with them.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from amc_pipeline.amc.errors import AmbiguousCreateError, AmcError, ErrorType

logger = logging.getLogger("amc_pipeline.amc.client")

#: Statuses worth another try of an idempotent call.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


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

    def stamina_kwargs(self) -> dict[str, Any]:
        """The policy as `stamina.retry_context` keyword arguments."""
        return {
            "attempts": self.attempts,
            "timeout": self.budget_seconds,
            "wait_initial": self.wait_initial,
            "wait_max": self.wait_max,
            "wait_jitter": self.wait_jitter,
        }

    def hook(self, label: str) -> Callable[[Exception], bool | float]:
        """stamina's `on=` hook for one call: whether to retry, and for a 429 how long AMC asked us to wait."""
        started = time.monotonic()
        budget = self.budget_seconds

        def hook(exc: Exception) -> bool | float:
            if not is_transient(exc):
                return False
            assert isinstance(exc, AmcError)
            if exc.retry_after is not None:
                remaining = budget - (time.monotonic() - started)
                if exc.retry_after > remaining:
                    logger.warning(
                        "%s: Retry-After %.1fs exceeds the remaining retry budget; giving up",
                        label,
                        exc.retry_after,
                    )
                    return False
                logger.info(
                    "%s: throttled, retrying after %.2fs (request_id=%s)",
                    label,
                    exc.retry_after,
                    exc.request_id,
                )
                return float(exc.retry_after)
            logger.info("%s: transient failure (%s), retrying", label, exc.error_type.value)
            return True

        return hook


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
