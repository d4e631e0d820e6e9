"""Checks the config models share (config.py and the blocks in config_*.py import them; no cycle)."""

from __future__ import annotations

from typing import Any


def one_of(value: Any, choices: tuple[str, ...]) -> Any:
    """`value` if it is one of `choices`, else the error a data engineer reads: `expected a|b, got 'c'`."""
    if value not in choices:
        raise ValueError(f"expected {'|'.join(choices)}, got {value!r}")
    return value
