"""The lifecycle table, spelled out independently of states.ALLOWED, every pair of the 7x7."""

import itertools

import pytest

from amc_pipeline.store import ACTIVE, ALLOWED, STATUSES, TERMINAL, can_transition

# Written out by hand from DESIGN.md "Lifecycle" so a change to ALLOWED must also change this.
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

