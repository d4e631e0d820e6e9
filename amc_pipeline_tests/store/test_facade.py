"""The store's facade: one `ExecutionStore` assembled from per-concern mixins, with the API callers use."""

import inspect

from amc_pipeline.store import ExecutionStore
from amc_pipeline.store.due import DueWork
from amc_pipeline.store.engine import StoreEngine
from amc_pipeline.store.executions import Executions
from amc_pipeline.store.heartbeats import Heartbeats
from amc_pipeline.store.landing import Landing
from amc_pipeline.store.notifications import Notifications
from amc_pipeline.store.packs import Packs
from amc_pipeline.store.reports import Reports

MIXINS = (Executions, DueWork, Landing, Heartbeats, Notifications, Reports, Packs)

# The public methods callers outside store/ rely on (enqueue_forced added by the split).
PUBLIC = {
    "active_attempts", "active_count", "active_counts", "adopt_attempt", "ambiguous_attempts", "amc_ids_for",
    "attempt_pairs",
    "attempts_for",
    "attempts_since", "begin_landing", "begin_submit", "close", "due_checks", "due_for_poll", "due_summary",
    "enqueue", "enqueue_forced", "get", "get_attempt", "get_by_amc_id", "get_live", "heartbeat", "landable",
    "list_executions", "new_attempt", "queued_for_submit", "record_check", "record_checks", "record_heartbeat",
    "record_land_failure", "record_landed", "instances_with_submit_work", "submitted_since", "transition",
    "update_attempt", "upgrade",
    # The poll pass per instance (monitor/poll.py): which instances have a check due, past run times.
    "due_instances", "run_times", "run_times_for",
    # Notifications (what each notification target was sent; amc_pipeline/notify/).
    "add_notifications", "claim_notification", "failing_notification_targets", "list_notifications",
    "notification_keys", "open_notifications", "pending_notifications", "record_notification_failure",
    "record_notification_sent", "resolve_notifications",
    # Packing (docs/packing.md): claiming a pack, and which windows it covers.
    "claim_pack", "pack_candidates", "pack_members", "pack_of",
}


def _public(cls: type) -> set[str]:
    return {name for name in vars(cls) if not name.startswith("_")}


def test_facade_has_every_public_method() -> None:
    assert {n for n in dir(ExecutionStore) if not n.startswith("_") and callable(getattr(ExecutionStore, n))} == PUBLIC


def test_mixins_define_disjoint_names_and_no_state() -> None:
    """Why it matters: with disjoint names the MRO never silently picks one of two methods."""
    seen: dict[str, str] = {}
    for mixin in MIXINS:
        assert issubclass(mixin, StoreEngine)
        assert "__init__" not in vars(mixin), mixin
        for name in vars(mixin):
            if name.startswith("__"):
                continue
            assert name not in seen, f"{name} defined by {seen[name]} and {mixin.__name__}"
            seen[name] = mixin.__name__
    assert not _public(ExecutionStore)  # the facade only assembles


def test_enqueue_keeps_its_signature() -> None:
    params = inspect.signature(ExecutionStore.enqueue).parameters
    assert list(params) == [
        "self", "workflow", "instance_id", "partition_key", "window_start", "window_end", "force_new", "now"
    ]
