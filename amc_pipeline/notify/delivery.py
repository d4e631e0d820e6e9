"""Sending one message: an httpx POST with a short timeout and a quick retry of transient failures.

The URL is a secret (a Slack webhook URL *is* its credential): it is never logged, and every error
text this module returns is scrubbed of it (the whole URL, its path and query, and any long path
segment) before it can reach the store, a log or an exception. Longer retries are the caller's: a
failed try is recorded with a next-try time (`service.backoff_seconds`).
"""

import time
from urllib.parse import urlsplit

import httpx

USER_AGENT = "amc-pipeline-notify/1"


def scrub(message: str, url: str) -> str:
    """`message` without the URL or any part of it that could be its secret."""
    parts = urlsplit(url)
    secrets = {url, url.rstrip("/"), parts.path, parts.query}
    secrets |= {segment for segment in parts.path.split("/") if len(segment) >= 6}
    secrets |= {value for pair in parts.query.split("&") for value in pair.split("=") if len(value) >= 6}
    for secret in sorted((s for s in secrets if s and s != "/"), key=len, reverse=True):
        message = message.replace(secret, "***")
    return message


def post_json(url: str, body: dict, *, headers: dict[str, str] | None = None, timeout: float = 3.0,
              tries: int = 2, backoff: float = 0.25, deadline: float | None = None) -> str | None:
    """POST `body` as JSON; None when the endpoint accepted it (2xx), else a scrubbed error text.

    Retries (up to `tries` in all) a network error, 429 or 5xx after `backoff`·2ⁿ s, unless that would
    pass `deadline` (a `time.monotonic()` value); other 4xx answers are not retried here.
    """
    error = "not sent"
    for attempt in range(max(1, tries)):
        try:
            with httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False,
                              headers={"User-Agent": USER_AGENT}) as client:
                response = client.post(url, json=body, headers=headers or {})
            if 200 <= response.status_code < 300:
                return None
            snippet = " ".join(response.text.split())[:200]
            error = f"HTTP {response.status_code}" + (f": {snippet}" if snippet else "")
            retryable = response.status_code == 429 or response.status_code >= 500
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            retryable = True
        except Exception as exc:  # a malformed URL in the variable, and the like: report, never raise
            error = f"{type(exc).__name__}: {exc}"
            retryable = False
        wait = backoff * 2**attempt
        late = deadline is not None and time.monotonic() + wait + timeout > deadline
        if not retryable or attempt == tries - 1 or late:
            break
        time.sleep(wait)
    return scrub(error, url)
