"""What each workflow asset declares to Dagster: freshness from its cadence and grace."""

from datetime import timedelta

import dagster as dg
import pytest

from amc_pipeline.definitions import build_definitions
from amc_pipeline_tests.harness import pipeline_config


@pytest.mark.parametrize(("partitions", "period"), [("daily", 1), ("weekly", 7), ("monthly", 31)])
def test_freshness_follows_cadence_and_grace(partitions: str, period: int) -> None:
    config = pipeline_config([{"name": "wf", "sql": "SELECT 1", "partitions": partitions,
                               "freshness_grace_hours": 8, "data_lag_days": 3}])
    asset = build_definitions(config).get_assets_def(dg.AssetKey(["amc", "wf"]))
    [spec] = asset.specs
    policy = spec.freshness_policy
    assert policy.fail_window.to_timedelta() == timedelta(days=period, hours=8)
    assert policy.warn_window.to_timedelta() == timedelta(days=period, hours=4)


def test_grace_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"freshness_grace_hours"):
        pipeline_config([{"name": "wf", "sql": "SELECT 1", "freshness_grace_hours": 0}])
