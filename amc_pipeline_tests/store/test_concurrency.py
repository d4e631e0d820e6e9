"""Races: two writers at once never both win, never lose an update, never duplicate an execution.

Threads with separate connections on SQLite; separate processes (spawn) on PostgreSQL, each with its
own ExecutionStore, meeting at a barrier right before every contended write.
"""

from amc_pipeline.store import ExecutionStore
from amc_pipeline_tests.store.helpers import T0, enq, submit
from amc_pipeline_tests.store.workers import run_concurrently

ROUNDS = 12


def test_cas_two_writers_exactly_one_wins(store: ExecutionStore, db_url: str, backend: str) -> None:
    ids = []
    for i in range(ROUNDS):
        view = enq(store, f"2024-10-{i + 1:02d}")
        ids.append(submit(store, view, f"amc-{i}").id)
    won_running, won_failed = run_concurrently(backend, db_url, [("cas", (ids, "RUNNING")), ("cas", (ids, "FAILED"))])
    for i, attempt_id in enumerate(ids):
        assert won_running[i] != won_failed[i], f"round {i}: both or neither applied"
        final = store.get_attempt(attempt_id).status
        assert final == ("RUNNING" if won_running[i] else "FAILED")  # the winner's write is the one kept


def test_begin_submit_claimed_once(store: ExecutionStore, db_url: str, backend: str) -> None:
    ids = [enq(store, f"2024-10-{i + 1:02d}").attempt.id for i in range(ROUNDS)]
    first, second = run_concurrently(backend, db_url, [("begin_submit", (ids,)), ("begin_submit", (ids,))])
    assert all(a != b for a, b in zip(first, second, strict=True))


def test_error_counts_are_not_lost(store: ExecutionStore, db_url: str, backend: str) -> None:
    attempt_id = submit(store, enq(store, "2024-10-01"), "amc-1").id
    run_concurrently(backend, db_url, [("count_errors", (attempt_id, 25)), ("count_errors", (attempt_id, 25))])
    assert store.get_attempt(attempt_id).error_count == 50


def test_enqueue_concurrently_never_duplicates(store: ExecutionStore, db_url: str, backend: str) -> None:
    keys = [f"2024-11-{i + 1:02d}" for i in range(ROUNDS)]
    results = run_concurrently(backend, db_url, [("enqueue", (keys,))] * 3)
    for i, key in enumerate(keys):
        per_key = [r[i] for r in results]
        assert {k for k, _, _ in per_key} == {key}
        assert len({execution_id for _, execution_id, _ in per_key}) == 1, per_key  # all got the same row
        assert sum(created for _, _, created in per_key) == 1, per_key  # exactly one created it
    rows = store.list_executions(workflow="race", live_only=False, limit=1000)
    assert len(rows) == len(keys)
    assert all(len(store.attempts_for(v.id)) == 1 and v.status == "QUEUED" for v in rows)


def test_new_attempt_concurrently_once(store: ExecutionStore, db_url: str, backend: str) -> None:
    pairs = []
    for i in range(ROUNDS):
        view = enq(store, f"2024-12-{i + 1:02d}")
        attempt = submit(store, view, f"amc-{i}")
        assert store.transition(attempt.id, "PENDING", "FAILED", now=T0)
        pairs.append((view.id, attempt.id))
    first, second = run_concurrently(backend, db_url, [("new_attempt", (pairs,)), ("new_attempt", (pairs,))])
    for i, (execution_id, _) in enumerate(pairs):
        winners = [x for x in (first[i], second[i]) if x is not None]
        assert len(winners) == 1, (first[i], second[i])
        assert [a.attempt for a in store.attempts_for(execution_id)] == [1, 2]
        assert store.get(execution_id).current_attempt_id == winners[0]


def test_two_stores_start_at_once_on_a_fresh_database(db_url: str, backend: str) -> None:
    """Migrations race: both processes (threads on SQLite) open the store on an empty database."""
    revisions = run_concurrently(backend, db_url, [("init", ()), ("init", ())])
    assert revisions == ["0006", "0006"]
    with ExecutionStore(db_url) as store:
        assert enq(store, "2024-09-01").status == "QUEUED"
