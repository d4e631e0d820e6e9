"""`parameter_values` templated from the window: `{window_start_date}` and friends.

Why a closed set of placeholders: a value is rendered per window at submit time, long after the YAML
was loaded, so a typo must fail at load (naming the field), not in a monitor run days later.
`str.format` syntax is used because it needs no dependency and braces are rare in AMC parameters;
a literal brace is written `{{` / `}}`.
"""

from __future__ import annotations

import string
from collections.abc import Mapping

#: What a parameter value may refer to; the values are computed from the partition's window.
PLACEHOLDERS: tuple[str, ...] = (
    "partition_key",  # the Dagster partition key, e.g. 2026-11-10
    "window_start",  # local wall time in the workflow's zone, yyyy-MM-ddTHH:mm:ss (as AMC takes it)
    "window_end",
    "window_start_date",  # yyyy-MM-dd
    "window_end_date",
    "timezone",
)


def placeholders(text: str) -> list[str]:
    """The field names `text` refers to; raises ValueError on malformed braces or formats."""
    names = []
    for _literal, field, format_spec, conversion in string.Formatter().parse(text):
        if field is None:
            continue
        if format_spec or conversion:
            raise ValueError(f"{{{field}}}: format specs and conversions are not supported")
        names.append(field)
    return names


def check_template(text: str) -> str:
    """`text` itself when every placeholder is known; ValueError naming the unknown one otherwise."""
    try:
        names = placeholders(text)
    except ValueError as exc:
        raise ValueError(f"not a valid template ({exc}); write a literal brace as {{{{ or }}}}") from None
    for name in names:
        if name not in PLACEHOLDERS:
            raise ValueError(f"unknown placeholder {{{name}}}; expected one of "
                             + ", ".join("{" + p + "}" for p in PLACEHOLDERS))
    return text


def is_template(text: str) -> bool:
    """True when `text` has at least one placeholder (so it has no single default value)."""
    return bool(placeholders(text))


def render(text: str, values: Mapping[str, str]) -> str:
    """`text` with its placeholders replaced from `values` (all of PLACEHOLDERS)."""
    return text.format_map(dict(values))
