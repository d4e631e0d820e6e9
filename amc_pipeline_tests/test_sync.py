"""`amc-pipeline sync`: saved workflows and AMC schedules kept equal to the YAML, against the simulator.

The CLI runs in-process (click's runner) with the simulator's URLs in the environment, on a YAML file
whose SQL lives in a `sql_file` beside it, so the path resolution and the printed plan are what a
user gets.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml
from click.testing import CliRunner

from amc_pipeline.cli import main
from amc_pipeline.config import ConfigError, load_config
from amc_pipeline.definitions import build_definitions
from amc_pipeline.simulator import SimulatorServer
from amc_pipeline.sync import code_version
from amc_pipeline_tests.constants import CREDENTIALS, INSTANCE, INSTANCE_ID
from amc_pipeline_tests.harness import sim_config

SQL_V1 = "SELECT campaign, SUM(impressions) AS impressions\nFROM dsp_impressions\nGROUP BY 1\n"
SQL_V2 = "SELECT campaign, SUM(clicks) AS clicks\nFROM dsp_impressions\nGROUP BY 1\n"


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(sim_config()) as server:
        yield server


def write_config(folder: Path, sql: str, *, schedule_hour: int = 0) -> Path:
    (folder / "sql").mkdir(exist_ok=True)
    (folder / "sql" / "reach.sql").write_text(sql)
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump({
        "instances": [INSTANCE],
        "workflows": [{
            "name": "reach", "instance_id": INSTANCE_ID, "sql_file": "sql/reach.sql", "saved_workflow": True,
            "start_date": "2026-10-01", "parameter_values": {"label": "fixed", "day": "{window_start_date}"},
            "amc_schedule": {"period": "daily", "hour_utc": schedule_hour},
        }],
    }))
    return path


def run_sync(sim: SimulatorServer, path: Path, *args: str) -> str:
    env = {"AMC_API_URL": sim.url, "AMC_TOKEN_URL": sim.token_url,
           "AMC_CLIENT_ID": CREDENTIALS["client_id"], "AMC_CLIENT_SECRET": CREDENTIALS["client_secret"],
           "AMC_REFRESH_TOKEN": CREDENTIALS["refresh_token"]}
    result = CliRunner().invoke(main, ["sync", "--config", str(path), *args], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_sync_creates_then_updates_then_reports_unchanged(sim: SimulatorServer, tmp_path: Path) -> None:
    path = write_config(tmp_path, SQL_V1)
    planned = run_sync(sim, path, "--dry-run")
    assert "create    workflow reach" in planned and "create    schedule reach-schedule" in planned
    assert "+FROM dsp_impressions" in planned and "dry run: nothing changed" in planned
    assert sim.state.get_workflow(INSTANCE_ID, "reach") is None  # a dry run changes nothing

    first = run_sync(sim, path)
    assert "applied 2 change(s)" in first
    saved = sim.state.get_workflow(INSTANCE_ID, "reach")
    assert saved["sqlQuery"] == SQL_V1.strip()
    assert {p["name"]: p.get("defaultValue") for p in saved["inputParameters"]} == {"label": "fixed", "day": None}
    schedule = sim.state.get_schedule(INSTANCE_ID, "reach-schedule")
    assert (schedule["workflowId"], schedule["aggregationPeriod"], schedule["aggregationHourUtc"]) == (
        "reach", "Daily", 0)
    version_1 = code_version(load_config(path).workflow("reach"))

    path = write_config(tmp_path, SQL_V2, schedule_hour=0)
    second = run_sync(sim, path)
    assert "update    workflow reach" in second and "unchanged schedule reach-schedule" in second
    assert "-SELECT campaign, SUM(impressions) AS impressions" in second
    assert "+SELECT campaign, SUM(clicks) AS clicks" in second
    assert "applied 1 change(s)" in second
    assert sim.state.get_workflow(INSTANCE_ID, "reach")["sqlQuery"] == SQL_V2.strip()
    version_2 = code_version(load_config(path).workflow("reach"))
    assert version_2 != version_1  # landed partitions go stale
    asset = build_definitions(load_config(path)).get_assets_def(dg.AssetKey(["amc", "reach"]))
    assert asset.code_versions_by_key[dg.AssetKey(["amc", "reach"])] == version_2

    third = run_sync(sim, path)
    assert "unchanged workflow reach" in third and "unchanged schedule reach-schedule" in third
    assert "0 create, 0 update, 2 unchanged" in third and "applied 0 change(s)" in third
    assert sim.stats().get("workflows", 0) == 6  # dry run GET; GET, POST; GET, PUT; GET: never a DELETE


def test_a_changed_schedule_hour_is_an_update(sim: SimulatorServer, tmp_path: Path) -> None:
    run_sync(sim, write_config(tmp_path, SQL_V1))
    output = run_sync(sim, write_config(tmp_path, SQL_V1, schedule_hour=6))
    assert "unchanged workflow reach" in output and "update    schedule reach-schedule" in output
    assert '+ "aggregationHourUtc": 6' in output
    assert sim.state.get_schedule(INSTANCE_ID, "reach-schedule")["aggregationHourUtc"] == 6


def test_sync_warns_when_schedule_runs_match_no_partition(sim: SimulatorServer, tmp_path: Path) -> None:
    path = write_config(tmp_path, SQL_V1, schedule_hour=6)  # a UTC workflow's days start at 00:00
    assert "warning: reach: the schedule's runs (ending daily at 06:00 UTC) match no daily partition" in (
        run_sync(sim, path, "--dry-run"))
    assert "warning" not in run_sync(sim, write_config(tmp_path, SQL_V1, schedule_hour=0), "--dry-run")


def test_bad_saved_workflow_config_names_the_field(tmp_path: Path) -> None:
    path = write_config(tmp_path, SQL_V1)
    data = yaml.safe_load(path.read_text())
    data["workflows"][0]["sql_file"] = "sql/missing.sql"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"workflows\[0\]: sql_file: cannot read .*missing.sql"):
        load_config(path)
    data["workflows"][0]["sql_file"] = "sql/reach.sql"
    data["workflows"][0]["parameter_values"] = {"day": "{window_day}"}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"parameter_values.day: unknown placeholder \{window_day\}"):
        load_config(path)
    data["workflows"][0]["parameter_values"] = {}
    data["workflows"][0]["amc_schedule"] = {"period": "weekly"}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"amc_schedule: start_day: required for a weekly schedule"):
        load_config(path)
    data["workflows"][0]["amc_schedule"] = {"period": "weekly", "start_day": "monday"}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"amc_schedule.period: weekly runs cover no daily partition"):
        load_config(path)
    data["workflows"][0]["amc_schedule"] = {"period": "daily"}
    data["workflows"][0]["saved_workflow"] = False
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"amc_schedule: needs saved_workflow: true"):
        load_config(path)
