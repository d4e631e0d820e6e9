"""Keep credentials out of logs, exception messages and reprs.

Why a module of its own: AMC's pre-signed download URLs carry their signature in the query string
(anyone holding the URL can read the results for ten minutes), and httpx's own exceptions and log
lines quote URLs verbatim. Everyone who logs a URL or re-raises a foreign error runs it through here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

REDACTED = "***"

#: A URL with a query string inside free text (exception messages, response bodies).
_URL_WITH_QUERY = re.compile(r"(?P<base>https?://[^\s?#\"'<>]+)\?[^\s\"'<>]*", re.IGNORECASE)
#: Bearer tokens and LWA tokens (`Atza|…`, `Atzr|…`) wherever they appear.
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+")
_LWA_TOKEN = re.compile(r"Atz[ar]\|[^\s\"',;&]+")
#: Form/query fields that are secrets (`client_secret=…`, `refresh_token=…`, `X-Amz-Signature=…`).
_SECRET_FIELDS = re.compile(
    r"(?i)\b(client_secret|refresh_token|access_token|x-amz-signature|x-amz-credential|"
    r"x-amz-security-token)=([^&\s\"']+)"
)


def redact_url(url: object) -> str:
    """The URL without its query string, fragment or user info: safe to log.

    Pre-signed S3 URLs keep their signature in the query; dropping the whole query is simpler and
    safer than picking parameters. The path still says which file it was.
    """
    text = str(url)
    try:
        parts = urlsplit(text)
    except ValueError:
        return REDACTED
    if not parts.scheme and not parts.netloc:
        return text.split("?", 1)[0].split("#", 1)[0]
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    query = REDACTED if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact_text(text: object, secrets: Iterable[str | None] = ()) -> str:
    """Free text with known secret values, tokens and URL query strings masked.

    `secrets` are exact values to mask (client secret, refresh token, current access token); the
    patterns catch the rest (Bearer headers, LWA tokens, signed URLs, secret form fields).
    """
    result = str(text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            result = result.replace(secret, REDACTED)
    result = _URL_WITH_QUERY.sub(lambda m: f"{m.group('base')}?{REDACTED}", result)
    result = _BEARER.sub(lambda m: f"{m.group(1)}{REDACTED}", result)
    result = _LWA_TOKEN.sub(REDACTED, result)
    result = _SECRET_FIELDS.sub(lambda m: f"{m.group(1)}={REDACTED}", result)
    return result


def mask(secret: str | None) -> str:
    """How a secret shows in a repr: whether it is set, never any of its characters."""
    return REDACTED if secret else "''"
