"""Status changes as Dagster events: one `AssetObservation` per change on the workflow's asset.

Why observations: the asset's history in the UI then tells each execution's story (queued,
submitted, running, failed with AMC's reason) between the materializations that land it.
"""

from collections.abc import Iterable

import dagster as dg

from amc_pipeline.monitor.events import StatusChange


def workflow_asset_key(workflow: str) -> dg.AssetKey:
    """`amc/<workflow>`: the asset key of a configured workflow."""
    return dg.AssetKey(["amc", workflow])


def observation(change: StatusChange) -> dg.AssetObservation:
    return dg.AssetObservation(
        asset_key=workflow_asset_key(change.workflow),
        partition=change.partition_key,
        description=f"AMC execution {change.from_status} → {change.to_status}",
        metadata=change.metadata(),
    )


def emit_changes(context: dg.OpExecutionContext | dg.AssetExecutionContext, changes: Iterable[StatusChange]) -> None:
    for change in changes:
        for one in (change, *change.members):  # a pack's move shows on every window it covers
            context.log_event(observation(one))
