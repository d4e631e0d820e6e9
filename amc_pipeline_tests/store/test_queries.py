

def test_heartbeat_upsert_keeps_last_ok(store) -> None:
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    assert store.heartbeat("poll") is None
    store.record_heartbeat("poll", ok=True, detail="fine", now=t0)
    store.record_heartbeat("poll", ok=False, detail="AMC down", now=t0 + timedelta(minutes=3))
    beat = store.heartbeat("poll")
    assert beat["ok"] is False and beat["detail"] == "AMC down"
    assert beat["last_ok_at"] == t0
    assert beat["last_attempt_at"] == t0 + timedelta(minutes=3)
