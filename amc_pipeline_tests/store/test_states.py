"""The lifecycle table, spelled out independently of states.ALLOWED, every pair of the 7x7."""

import itertools

import pytest

from amc_pipeline.store.states import (
    ACTIVE,
    ALLOWED,
    CANCELLED,
    FAILED,
    PENDING,
    RUNNING,
    STATUSES,
    SUCCESS,
    TERMINAL,
    can_transition,
    from_amc,
)

# Written out by hand from docs/architecture.md "The lifecycle" so a change to ALLOWED must also change this.
EXPECTED_MOVES = {
    ("QUEUED", "PENDING"),
    ("QUEUED", "CANCELLED"),
    ("QUEUED", "FAILED"),
    ("PENDING", "RUNNING"),
    ("PENDING", "SUCCESS"),
    ("PENDING", "FAILED"),
    ("PENDING", "CANCELLED"),
    ("PENDING", "TIMEOUT"),
    ("RUNNING", "SUCCESS"),
    ("RUNNING", "FAILED"),
    ("RUNNING", "CANCELLED"),
    ("RUNNING", "TIMEOUT"),
}
PAIRS = list(itertools.product(STATUSES, STATUSES))


def test_statuses_and_groups() -> None:
    assert STATUSES == ("QUEUED", "PENDING", "RUNNING", "SUCCESS", "FAILED", "CANCELLED", "TIMEOUT")
    assert {"PENDING", "RUNNING"} == ACTIVE
    assert {"SUCCESS", "FAILED", "CANCELLED", "TIMEOUT"} == TERMINAL
    assert set(ALLOWED) == set(STATUSES)
    assert all(not ALLOWED[s] for s in TERMINAL)


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_transition_table(a: str, b: str) -> None:
    assert can_transition(a, b) is ((a, b) in EXPECTED_MOVES)


def test_noop_and_unknown_are_not_transitions() -> None:
    assert not any(can_transition(s, s) for s in STATUSES)
    assert not can_transition("QUEUED", "BOGUS")
    assert not can_transition("BOGUS", "PENDING")



@pytest.mark.parametrize(
    ("amc", "ours"),
    [("PENDING", PENDING), ("RUNNING", RUNNING), ("PUBLISHING", RUNNING), ("SUCCEEDED", SUCCESS),
     ("FAILED", FAILED), ("REJECTED", FAILED), ("CANCELLED", CANCELLED), (" succeeded ", SUCCESS),
     ("SOMETHING_NEW", None), ("", None), (None, None)],
)
def test_amc_statuses_map_onto_the_lifecycle(amc: str | None, ours: str | None) -> None:
    assert from_amc(amc) == ours
