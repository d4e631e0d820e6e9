"""Download every result file of a SUCCEEDED execution to disk, streamed, verified, safely.

Why each rule:
- *Fresh URLs, never stored*: AMC's pre-signed S3 URLs expire after 10 minutes and their signature
  is a credential. We ask AMC for them when we start, and again when S3 answers 403 (expired).
- *Every file, in order*: results split over several files give several URLs; reading only the
  first loses data. File `i` of `downloadUrls` becomes part `i`.
- *Streamed in chunks*: results can be gigabytes; nothing holds a whole file in memory.
- *Own httpx.Client*: the AMC client adds bearer tokens and advertiser headers; those must never go
  to S3 (or anywhere else).
- *Content-Length verified, truncated bodies retried*: a connection dropped mid-body otherwise lands
  a silently short result.
- *Host allow-list*: a download URL may only point at the AMC API host (the simulator serves its
  files there) or S3 (`*.amazonaws.com`, https). We never fetch arbitrary hosts a response names.
- *No URL query strings in logs or errors*: see `amc_pipeline.amc.redact`.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from amc_pipeline.amc.errors import AmcError, ErrorType
from amc_pipeline.amc.redact import redact_text, redact_url

log = logging.getLogger(__name__)


class _RedactHttpxUrls(logging.Filter):
    """httpx logs every request at INFO as `HTTP Request: GET <full URL>`: with a pre-signed URL that
    is the signature. This filter (installed once on the "httpx" logger) drops query strings from
    the URLs in those records, for every httpx client in the process."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                redact_url(a) if isinstance(a, httpx.URL) or (isinstance(a, str) and "://" in a and "?" in a)
                else a
                for a in record.args
            )
        elif isinstance(record.msg, str) and "?" in record.msg and "://" in record.msg:
            record.msg = redact_text(record.msg)
        return True


def install_httpx_log_redaction() -> None:
    """Idempotent: add the URL-redacting filter to the "httpx" logger."""
    httpx_logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactHttpxUrls) for f in httpx_logger.filters):
        httpx_logger.addFilter(_RedactHttpxUrls())


install_httpx_log_redaction()

DEFAULT_CHUNK_SIZE = 1 << 20
DEFAULT_MAX_ATTEMPTS = 4
#: Files downloaded at once: one connection to S3 (or the simulator) gives a fraction of what two do
#: (benchmarks/landing.py: ~340 MB/s with one, ~550 MB/s with two on localhost).
DEFAULT_DOWNLOAD_WORKERS = 2
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
S3_HOST_SUFFIX = ".amazonaws.com"
_SNIFF_BYTES = 512

CSV_TYPES = {"text/csv", "application/csv", "text/comma-separated-values", "text/plain"}
JSON_TYPES = {"application/json", "application/x-ndjson", "application/ndjson", "application/jsonl",
              "application/x-jsonlines", "application/jsonlines", "application/json-seq", "text/json"}
UNTYPED = {"", "binary/octet-stream", "application/octet-stream"}


class ResultDownloadError(AmcError):
    """A result file could not be downloaded (after retries). Never carries the URL's query."""


class UnsafeDownloadUrlError(ResultDownloadError):
    """AMC returned a download URL on a host we do not fetch from."""


class ResultFormatError(ResultDownloadError):
    """The body is not a result file (an HTML error page, XML, or JSON where CSV was declared)."""


@dataclass(frozen=True)
class DownloadedFile:
    """One result file on disk. `kind` is "csv" or "json"; `content_type` as the server sent it."""

    index: int
    path: Path
    bytes: int
    kind: str
    content_type: str
    attempts: int


class _Retry(Exception):
    """Internal: this attempt failed in a way worth another try (refresh URLs when `expired`)."""

    def __init__(self, reason: str, *, expired: bool = False, status: int | None = None) -> None:
        super().__init__(reason)
        self.expired = expired
        self.status = status


def api_url_of(client: Any) -> str | None:
    """The AMC API base URL a client talks to (the one host besides S3 we accept download URLs on)."""
    for attr in ("api_url", "base_url", "_api_url", "_base_url"):
        value = getattr(client, attr, None)
        if value:
            return str(value)
    http = getattr(client, "_http", None) or getattr(client, "http", None)
    base = getattr(http, "base_url", None)
    return str(base) if base else None


def check_download_url(url: str, api_url: str | None, *, extra_hosts: Sequence[str] = ()) -> None:
    """Refuse a URL unless it is on the API's own origin or on S3 over https (no credentials in it)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeDownloadUrlError("download URL is not a valid URL",
                                     error_type=ErrorType.PERMISSION) from exc
    host = (parts.hostname or "").lower()
    if parts.username or parts.password:
        raise UnsafeDownloadUrlError(f"download URL carries user info: {redact_url(url)}",
                                     error_type=ErrorType.PERMISSION)
    allowed_extra = {h.lower() for h in extra_hosts}
    if parts.scheme == "https" and (host.endswith(S3_HOST_SUFFIX) or host in allowed_extra):
        return
    if api_url:
        api = urlsplit(api_url)
        default = {"http": 80, "https": 443}
        if (
            parts.scheme == api.scheme
            and host == (api.hostname or "").lower()
            and (port or default.get(parts.scheme)) == (api.port or default.get(api.scheme))
        ):
            return
    raise UnsafeDownloadUrlError(
        f"refusing download URL on host {host or '?'!r}: only the AMC API host or S3 (*{S3_HOST_SUFFIX}) "
        f"are allowed ({redact_url(url)})",
        error_type=ErrorType.PERMISSION,
    )


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


_JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")


def _named_json(url: str) -> bool:
    """The URL's path (never its query) ends like a JSON file."""
    return urlsplit(url).path.lower().endswith(_JSON_SUFFIXES)


def _classify(content_type: str, url: str, head: bytes, index: int, redacted: str) -> str:
    """Decide csv/json from Content-Type, then the URL's suffix, then the first bytes; refuse others."""
    media = _media_type(content_type)
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    first = start[:1]
    lowered = start[:64].lower()
    if media in ("text/html", "application/xhtml+xml") or lowered.startswith((b"<!doctype", b"<html")):
        raise ResultFormatError(
            f"result file {index} is an HTML page, not a result (content type {media or 'none'}; {redacted})",
            error_type=ErrorType.AMC_API)
    if media in ("application/xml", "text/xml") or lowered.startswith(b"<?xml") or first == b"<":
        raise ResultFormatError(
            f"result file {index} is XML (an S3 error?), not a result ({media or 'no content type'}; "
            f"{redacted})", error_type=ErrorType.AMC_API)
    if media in JSON_TYPES or (media in UNTYPED and _named_json(url)):
        kind = "json"
    elif media in CSV_TYPES or (media in UNTYPED and urlsplit(url).path.lower().endswith(".csv")):
        kind = "csv"
    elif media in UNTYPED:
        kind = "json" if first in (b"{", b"[") else "csv"
    else:
        raise ResultFormatError(f"result file {index} has unexpected content type {media!r} ({redacted})",
                                error_type=ErrorType.AMC_API)
    if kind == "csv" and first in (b"{", b"["):
        raise ResultFormatError(
            f"result file {index} was declared CSV ({media or 'by its name'}) but holds JSON ({redacted})",
            error_type=ErrorType.AMC_API)
    if kind == "json" and first and first not in (b"{", b"["):
        raise ResultFormatError(
            f"result file {index} was declared JSON ({media}) but is not JSON ({redacted})",
            error_type=ErrorType.AMC_API)
    return kind


_S3_CODE = re.compile(rb"<Code>([^<]{1,64})</Code>")
_S3_MESSAGE = re.compile(rb"<Message>([^<]{1,200})</Message>")


def _s3_reason(body: bytes) -> str:
    """S3's error code and message only: its XML may echo the signature, so nothing else is kept."""
    code = _S3_CODE.search(body)
    message = _S3_MESSAGE.search(body)
    parts = [m.group(1).decode("utf-8", "replace") for m in (code, message) if m]
    return ": ".join(parts) if parts else "no S3 error code"


class ResultDownloader:
    """Downloads one execution's result files, re-fetching URLs when they expire.

    `get_urls` is `client.get_download_urls(instance, execution_id)`; it is called once at the start
    and again only after an expired (403) URL or a failed attempt.
    """

    def __init__(
        self,
        get_urls: Callable[[], list[str]],
        dest_dir: str | os.PathLike[str],
        *,
        api_url: str | None,
        extra_hosts: Sequence[str] = (),
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        backoff_seconds: float = 0.5,
        workers: int = DEFAULT_DOWNLOAD_WORKERS,
        http: httpx.Client | None = None,
    ) -> None:
        self.get_urls = get_urls
        self.dest_dir = Path(dest_dir)
        self.api_url = api_url
        self.extra_hosts = tuple(extra_hosts)
        self.max_attempts = max(1, max_attempts)
        self.chunk_size = chunk_size
        self.backoff_seconds = backoff_seconds
        self._own_http = http is None
        # A plain client: no AMC auth headers, no redirects (a redirect could leave the allow-list).
        self.http = http or httpx.Client(timeout=timeout, follow_redirects=False)
        self.workers = max(1, workers)
        self._lock = threading.Lock()
        self.urls: list[str] | None = None
        self.url_fetches = 0
        self.seconds = 0.0

    def close(self) -> None:
        if self._own_http:
            self.http.close()

    def __enter__(self) -> ResultDownloader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _refresh(self, stale: list[str] | None = None) -> list[str]:
        with self._lock:
            if stale is not None and self.urls is not stale:
                return self.urls  # another download already fetched fresh URLs
            return self._refresh_locked()

    def _refresh_locked(self) -> list[str]:
        urls = list(self.get_urls())
        self.url_fetches += 1
        for url in urls:
            check_download_url(url, self.api_url, extra_hosts=self.extra_hosts)
        if self.urls is not None and len(urls) != len(self.urls):
            raise ResultDownloadError(
                f"AMC returned {len(urls)} download URLs after {len(self.urls)} before: the result changed",
                error_type=ErrorType.AMC_API)
        self.urls = urls
        return urls

    def file_count(self) -> int:
        if self.urls is None:
            self._refresh()
        assert self.urls is not None
        return len(self.urls)

    def __iter__(self) -> Iterator[DownloadedFile]:
        """Download every file (indexes as in downloadUrls), yielding each as soon as it is on disk.

        With `workers` > 1 several files download at once, each over its own connection (S3, and the
        simulator, serve one connection at a fraction of what a few give); files are then yielded in
        completion order.
        """
        self.dest_dir.mkdir(parents=True, exist_ok=True)
        count = self.file_count()
        if self.workers <= 1 or count <= 1:
            for index in range(count):
                began = time.perf_counter()
                downloaded = self._download_with_retries(index)
                self.seconds += time.perf_counter() - began  # not counting the consumer's time
                yield downloaded
            return
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=min(self.workers, count), thread_name_prefix="amc-download") as pool:
            pending = {pool.submit(self._download_with_retries, i) for i in range(count)}
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    self.seconds = time.perf_counter() - started
                    for future in done:
                        yield future.result()
            finally:
                for future in pending:
                    future.cancel()

    def _download_with_retries(self, index: int) -> DownloadedFile:
        assert self.urls is not None
        last: _Retry | None = None
        used: list[str] | None = None
        for attempt in range(1, self.max_attempts + 1):
            if attempt > 1:
                if last is not None and not last.expired:
                    time.sleep(self.backoff_seconds * (attempt - 1))
                # Any failed attempt may be a URL that just expired: fresh URLs cost one API call.
                self._refresh(stale=used)
            used = self.urls
            url = used[index]
            try:
                return self._download_once(index, url, attempt)
            except _Retry as retry:
                last = retry
                log.warning("result file %d attempt %d/%d failed: %s (%s)", index, attempt,
                            self.max_attempts, retry, redact_url(url))
        assert last is not None
        raise ResultDownloadError(
            f"result file {index} failed after {self.max_attempts} attempts: {last}",
            error_type=ErrorType.PERMISSION if last.status == 403 else ErrorType.NETWORK,
            status_code=last.status)

    def _download_once(self, index: int, url: str, attempt: int) -> DownloadedFile:
        check_download_url(url, self.api_url, extra_hosts=self.extra_hosts)
        redacted = redact_url(url)
        part = self.dest_dir / f"file-{index:04d}.download"
        try:
            with self.http.stream("GET", url) as response:
                status = response.status_code
                if status == 403:
                    reason = _s3_reason(response.read()[:4096])
                    raise _Retry(f"HTTP 403 ({reason}): URL expired or refused", expired=True, status=403)
                if status in (408, 429) or status >= 500:
                    raise _Retry(f"HTTP {status}", status=status)
                if status != 200:
                    raise ResultDownloadError(f"result file {index}: HTTP {status} ({redacted})",
                                              error_type=ErrorType.AMC_API, status_code=status)
                content_type = response.headers.get("content-type", "")
                declared = response.headers.get("content-length")
                expected = int(declared) if declared and declared.isdigit() else None
                kind: str | None = None
                written = 0
                with open(part, "wb") as fh:
                    head = b""
                    for chunk in response.iter_bytes(self.chunk_size):
                        if kind is None:
                            head += chunk
                            if len(head) < _SNIFF_BYTES:
                                continue
                            kind = _classify(content_type, url, head, index, redacted)
                            fh.write(head)
                            written += len(head)
                            continue
                        fh.write(chunk)
                        written += len(chunk)
                    if kind is None:
                        kind = _classify(content_type, url, head, index, redacted) if head else (
                            _empty_kind(content_type, url))
                        fh.write(head)
                        written += len(head)
                received = response.num_bytes_downloaded
        except httpx.TransportError as exc:
            # Includes a body cut short (RemoteProtocolError) and timeouts. httpx messages can quote
            # the URL: keep only the exception type.
            _unlink(part)
            raise _Retry(f"{type(exc).__name__} while downloading") from None
        except BaseException:
            _unlink(part)
            raise
        if expected is not None and received != expected:
            _unlink(part)
            raise _Retry(f"truncated body: {received} of {expected} bytes")
        if expected is None:
            log.warning("result file %d came without Content-Length; size not verified (%s)", index, redacted)
        final = self.dest_dir / f"file-{index:04d}.{kind}"
        os.replace(part, final)
        log.info("downloaded result file %d: %d bytes, %s (%s)", index, written, content_type or "no type",
                 redacted)
        return DownloadedFile(index=index, path=final, bytes=written, kind=kind,
                              content_type=content_type, attempts=attempt)


def _empty_kind(content_type: str, url: str) -> str:
    if _media_type(content_type) in JSON_TYPES or _named_json(url):
        return "json"
    return "csv"


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def iter_results(
    client: Any,
    instance: Any,
    amc_execution_id: str,
    dest_dir: str | os.PathLike[str],
    *,
    api_url: str | None = None,
    **options: Any,
) -> ResultDownloader:
    """A ResultDownloader for an execution; iterate it to get files as they arrive."""
    return ResultDownloader(
        lambda: client.get_download_urls(instance, amc_execution_id),
        dest_dir,
        api_url=api_url or api_url_of(client),
        **options,
    )
