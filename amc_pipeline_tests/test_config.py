"""Configuration errors name the file, the field path and the problem, before Dagster loads anything."""

import subprocess
import sys

import pytest
import yaml

from amc_pipeline.config import PROJECT_ROOT, ConfigError, load_config, parse_config

GOOD = {
    "instances": [
        {"instance_id": "amcabc123", "advertiser_id": "ENTITY1AA1AA11AAA1", "marketplace_id": "ATVPDKIKX0DER"}
    ],
    "workflows": [
        {"name": "campaign_performance", "instance_id": "amcabc123", "sql": "SELECT 1", "partitions": "daily",
         "start_date": "2026-09-01"},
        {"name": "weekly_reach", "instance_id": "amcabc123", "workflow_id": "standard_frequency",
         "partitions": "weekly", "start_date": "2026-09-07"},
    ],
}


def bad(path: str, value, source="amc_pipeline.yaml") -> str:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    target = data
    parts = path.split(".")
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is KeyError:
        del target[parts[-1]]
    else:
        target[parts[-1]] = value
    with pytest.raises(ConfigError) as info:
        parse_config(data, source)
    return str(info.value)


def test_shipped_demo_config_loads():
    config = load_config(PROJECT_ROOT / "amc_pipeline.yaml")
    assert {w.name for w in config.workflows} >= {"campaign_performance"}


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("workflows.1.partitions", "hourly",
         "amc_pipeline.yaml: workflows[1].partitions: expected daily|weekly|monthly, got 'hourly'"),
        ("workflows.0.name", "../etc", "amc_pipeline.yaml: workflows[0].name: expected [a-z][a-z0-9_]*"),
        ("workflows.0.name", "x; DROP TABLE amc_executions", "workflows[0].name: expected"),
        ("workflows.0.name", "execution_metrics", "workflows[0].name: 'execution_metrics' is reserved"),
        ("workflows.0.name", "execution_overview", "workflows[0].name: 'execution_overview' is reserved"),
        ("workflows.0.timezone", "Mars/Olympus", "workflows[0].timezone: expected an IANA time zone"),
        ("workflows.0.start_date", KeyError, "workflows[0].start_date: required field is missing"),
        ("workflows.0.max_runtime_minutes", 5, "workflows[0].max_runtime_minutes: Input should be greater"),
        ("instances.0.instance_id", "amc/../../x", "instances[0].instance_id: expected lowercase"),
        ("instances.0.advertiser_id", "ENTITY'--", "instances[0].advertiser_id: expected letters and digits"),
        ("workflows.0.client_secret", "oops", "workflows[0].client_secret: unknown field"),
        ("workflows.0.workflow_id", "also-saved", "workflows[0]: give exactly one of sql"),
    ],
)
def test_bad_config_names_file_field_and_problem(path, value, expected):
    assert expected in bad(path, value)


def test_unknown_instance_reference():
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["workflows"][1]["instance_id"] = "nope"
    with pytest.raises(ConfigError, match=r"workflows\[1\].instance_id: unknown instance 'nope'"):
        parse_config(data, "amc_pipeline.yaml")


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("instances: [\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML at line"):
        load_config(broken)


def test_bad_config_fails_code_location_with_one_line(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["workflows"][0]["partitions"] = "hourly"
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = subprocess.run([sys.executable, "-c", "import amc_pipeline.definitions"], capture_output=True, text=True,
                          env={"AMC_PIPELINE_CONFIG": str(path), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert proc.returncode != 0
    assert "pipeline.yaml: workflows[0].partitions: expected daily|weekly|monthly, got 'hourly'" in proc.stderr
