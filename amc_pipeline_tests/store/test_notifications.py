"""The notifications table: one row per (target, event), claim-then-send CAS, resolution CAS, failing targets."""

import threading
from datetime import timedelta

from amc_pipeline.store import ExecutionStore
from amc_pipeline.store.notifications import NewNotification
from amc_pipeline_tests.store.helpers import T0, at


def _event(key: str, kind: str = "failed") -> NewNotification:
    return NewNotification(event_key=key, kind=kind, workflow="wf", partition_key="2024-09-01", payload="{}")


def test_an_event_is_recorded_once_per_target(store: ExecutionStore) -> None:
    assert store.add_notifications("slack", [_event("failed:1"), _event("failed:1")], now=T0) == ["failed:1"]
    assert store.add_notifications("slack", [_event("failed:1"), _event("stuck:2", "stuck")], now=at(1)) == ["stuck:2"]
    assert store.add_notifications("hook", [_event("failed:1")], now=at(2)) == ["failed:1"]
    rows = store.list_notifications(target="slack")
    assert [(r.event_key, r.first_seen_at, r.attempts, r.sent_at) for r in rows] == [
        ("failed:1", T0, 0, None), ("stuck:2", at(1), 0, None)]
    assert store.notification_keys("slack", "stuck:") == {"stuck:2"}
    assert store.notification_keys("slack", "failed_") == set()  # LIKE wildcards are escaped


def test_claim_is_a_compare_and_set_and_leases_the_row(store: ExecutionStore) -> None:
    store.add_notifications("slack", [_event("failed:1")], now=T0)
    [row] = store.pending_notifications("slack", now=T0)
    assert store.claim_notification(row.id, attempts=row.attempts, lease_until=at(60), now=T0)
    # A second evaluation that read the same row loses, and the leased row is not due.
    assert not store.claim_notification(row.id, attempts=row.attempts, lease_until=at(60), now=T0)
    assert store.pending_notifications("slack", now=at(30)) == []
    # The sender died holding the lease: after it, the row is due again.
    [again] = store.pending_notifications("slack", now=at(61))
    assert again.attempts == 1
    assert store.claim_notification(again.id, attempts=1, lease_until=at(120), now=at(61))
    assert store.record_notification_failure(again.id, error="HTTP 500", next_try_at=at(90), now=at(62))
    assert store.failing_notification_targets(["slack", "hook"]) == {"slack": "HTTP 500"}
    [retry] = store.pending_notifications("slack", now=at(90))
    assert store.claim_notification(retry.id, attempts=2, lease_until=at(150), now=at(90))
    assert store.record_notification_sent(retry.id, now=at(91))
    assert not store.record_notification_sent(retry.id, now=at(92))
    [done] = store.list_notifications()
    assert (done.sent_at, done.attempts, done.last_error, done.next_try_at) == (at(91), 3, None, None)
    assert store.failing_notification_targets(["slack"]) == {}
    assert store.pending_notifications("slack", now=at(1000)) == []


def test_concurrent_claims_send_each_row_once(store: ExecutionStore) -> None:
    store.add_notifications("slack", [_event(f"failed:{i}") for i in range(20)], now=T0)
    won: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for row in store.pending_notifications("slack", now=at(1)):
            if store.claim_notification(row.id, attempts=row.attempts, lease_until=at(60), now=at(1)):
                with lock:
                    won.append(row.id)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == sorted(r.id for r in store.list_notifications())


def test_resolution_is_recorded_once(store: ExecutionStore) -> None:
    store.add_notifications("slack", [_event("failed:1"), _event("stuck:2", "stuck")], now=T0)
    ids = [r.id for r in store.open_notifications("slack", ["failed", "stuck"])]
    recovered = _event("recovered:stuck:2", "recovered")
    assert store.resolve_notifications("slack", ids, recovered=recovered, now=at(5))
    assert not store.resolve_notifications("slack", ids, recovered=recovered, now=at(6))
    assert store.open_notifications("slack", ["failed", "stuck"]) == []
    rows = {r.event_key: r for r in store.list_notifications()}
    assert rows["failed:1"].resolved_at == at(5) and rows["recovered:stuck:2"].first_seen_at == at(5)
    assert len(rows) == 3
    assert store.pending_notifications("slack", now=at(5) + timedelta(seconds=1))[-1].kind == "recovered"
