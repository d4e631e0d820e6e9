"""The execution lifecycle: the only statuses an attempt can have and the only moves between them.

Why one table of allowed moves: every status write in the store is a compare-and-set checked against
`ALLOWED`, so a late or duplicated observation (an old poll result, a second overlapping monitor run)
can never move an execution backwards or out of a terminal state.
"""

QUEUED = "QUEUED"
PENDING = "PENDING"
RUNNING = "RUNNING"
SUCCESS = "SUCCESS"
FAILED = "FAILED"
CANCELLED = "CANCELLED"
TIMEOUT = "TIMEOUT"

#: Who started an attempt's AMC execution (the `origin` column; None means this pipeline did).
ORIGIN_SCHEDULE = "schedule"  # an AMC schedule's run, adopted (spends no ad hoc quota)
ORIGIN_EXTERNAL = "external"  # started elsewhere (console, another tool), adopted
ORIGINS: tuple[str, ...] = (ORIGIN_SCHEDULE, ORIGIN_EXTERNAL)

#: Every status, in lifecycle order (useful for tables and tests).
STATUSES: tuple[str, ...] = (QUEUED, PENDING, RUNNING, SUCCESS, FAILED, CANCELLED, TIMEOUT)

#: Running at AMC: they occupy one of the instance's execution slots and are polled.
ACTIVE: frozenset[str] = frozenset({PENDING, RUNNING})
#: Final: nothing ever moves out of these.
TERMINAL: frozenset[str] = frozenset({SUCCESS, FAILED, CANCELLED, TIMEOUT})

#: from status -> statuses it may move to. Skipped observations (PENDING straight to SUCCESS) are normal.
ALLOWED: dict[str, frozenset[str]] = {
    QUEUED: frozenset({PENDING, CANCELLED, FAILED}),
    PENDING: frozenset({RUNNING, SUCCESS, FAILED, CANCELLED, TIMEOUT}),
    RUNNING: frozenset({SUCCESS, FAILED, CANCELLED, TIMEOUT}),
    SUCCESS: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
    TIMEOUT: frozenset(),
}


def can_transition(from_status: str, to_status: str) -> bool:
    """True when `from_status -> to_status` is an allowed move. A no-op (a == b) is not a transition."""
    return to_status in ALLOWED.get(from_status, frozenset())


#: AMC's execution statuses (as the API spells them, older endpoints included) → ours. The client
#: reports AMC's word unchanged; this is where the lifecycle reads it (docs/architecture.md).
AMC_STATUS_MAP: dict[str, str] = {
    "PENDING": PENDING,
    "RUNNING": RUNNING,
    "PUBLISHING": RUNNING,
    "SUCCEEDED": SUCCESS,
    "FAILED": FAILED,
    "REJECTED": FAILED,
    "CANCELLED": CANCELLED,
}


def from_amc(amc_status: str | None) -> str | None:
    """Our status for AMC's, or None for a status we do not know (treated as in progress, logged)."""
    return AMC_STATUS_MAP.get((amc_status or "").strip().upper())
