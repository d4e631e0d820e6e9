"""The notifications config (bad values name the field, never echo a URL), message shapes, URL scrubbing."""

import pytest

from amc_pipeline.config import ConfigError, parse_config
from amc_pipeline.notify.delivery import post_json, scrub
from amc_pipeline.notify.events import problem_slug
from amc_pipeline.notify.messages import partition_link, slack_body, webhook_body
from amc_pipeline_tests.constants import INSTANCE

SECRET_URL = "https://hooks.slack.com/services/T0AMC/B0AMC/s3cr3tT0kenValue"
BASE = {"instances": [INSTANCE],
        "workflows": [{"name": "wf", "instance_id": INSTANCE["instance_id"], "sql": "SELECT 1",
                       "start_date": "2026-10-01"}]}


def _parse(notifications):
    return parse_config({**BASE, "notifications": notifications}, "amc_pipeline.yaml")


def test_defaults_and_a_full_block():
    config = _parse({"targets": [{"name": "team-slack", "kind": "slack", "url_env": "AMC_SLACK_WEBHOOK_URL"}]})
    assert config.notifications.dagster_ui_url == "http://127.0.0.1:3000"
    [target] = config.notifications.targets
    assert target.events == ("failed", "stuck", "landing_failed", "recovered", "unhealthy") and target.workflows is None
    config = _parse({"dagster_ui_url": "https://dagster.example.com/", "targets": [
        {"name": "pager", "kind": "webhook", "url_env": "PAGER_URL", "events": ["failed", "recovered"],
         "workflows": ["wf"]}]})
    assert config.notifications.dagster_ui_url == "https://dagster.example.com"
    assert parse_config(BASE).notifications is None


@pytest.mark.parametrize(("block", "message"), [
    ({"targets": [{"name": "s", "kind": "email", "url_env": "X"}]},
     "amc_pipeline.yaml: notifications.targets[0].kind: expected slack|webhook, got 'email'"),
    ({"targets": [{"name": "s", "kind": "slack", "url_env": "X", "events": ["failed", "exploded"]}]},
     "amc_pipeline.yaml: notifications.targets[0].events: expected failed|stuck|landing_failed|recovered|unhealthy, "
     "got 'exploded'"),
    ({"targets": [{"name": "s", "kind": "slack", "url_env": "X", "workflows": ["nope"]}]},
     "amc_pipeline.yaml: notifications.targets[0].workflows[0]: unknown workflow 'nope' (configured: wf)"),
    ({"targets": [{"name": "s", "kind": "slack"}]}, "amc_pipeline.yaml: notifications.targets[0].url_env: required"),
    ({"targets": [{"name": "s", "kind": "slack", "url_env": "X"}, {"name": "s", "kind": "webhook", "url_env": "Y"}]},
     "amc_pipeline.yaml: notifications: target names must be unique"),
    ({"dagster_ui_url": "localhost:3000"}, "amc_pipeline.yaml: notifications.dagster_ui_url: expected http(s)://"),
])
def test_bad_config_names_the_field(block, message):
    with pytest.raises(ConfigError) as err:
        _parse(block)
    assert str(err.value).startswith(message), str(err.value)


@pytest.mark.parametrize("block", [
    {"targets": [{"name": "s", "kind": "slack", "url_env": SECRET_URL}]},
    {"targets": [{"name": "s", "kind": "slack", "url_env": "X", "url": SECRET_URL}]},
])
def test_a_url_in_the_yaml_is_refused_without_quoting_it(block):
    with pytest.raises(ConfigError) as err:
        _parse(block)
    assert "notifications.targets[0].url" in str(err.value)
    assert "s3cr3t" not in str(err.value) and "hooks.slack.com" not in str(err.value)


def test_scrub_removes_every_part_of_the_url():
    text = f"HTTP 404: no_service for {SECRET_URL} (path /services/T0AMC/B0AMC/s3cr3tT0kenValue, s3cr3tT0kenValue)"
    cleaned = scrub(text, SECRET_URL)
    assert "s3cr3t" not in cleaned and "HTTP 404: no_service" in cleaned
    assert scrub("x", "https://h.example/hook?token=abcdef123") == "x"
    assert "abcdef123" not in scrub("bad token=abcdef123", "https://h.example/hook?token=abcdef123")


def test_post_to_a_malformed_url_reports_without_raising():
    error = post_json("not a url/s3cr3tT0kenValue", {}, timeout=0.5, tries=1)
    assert error and "s3cr3t" not in error


def test_messages_name_workflow_window_status_reason_and_link():
    data = {"kind": "failed", "event_key": "failed:wf:2026-10-05:1.1", "workflow": "wf", "partition_key": "2026-10-05",
            "window_start": "2026-10-05T00:00:00+00:00", "window_end": "2026-10-06T00:00:00+00:00",
            "status": "FAILED", "reason": "Unable to compile <query>", "error_type": "QUERY", "attempts": 2,
            "amc_execution_id": "amc-1"}
    slack = slack_body(data, "http://ui:3000")
    assert slack["text"].splitlines()[0] == "❌ amc/wf window 2026-10-05 FAILED"
    assert "AMC's reason: QUERY: Unable to compile <query>" in slack["text"]
    assert "&lt;query&gt;" in str(slack["blocks"])  # mrkdwn escaped
    assert "<http://ui:3000/assets/amc/wf?partition=2026-10-05|Open in Dagster>" in str(slack["blocks"])
    hook = webhook_body(data, "http://ui:3000")
    assert {k: hook[k] for k in ("workflow", "window", "status", "reason", "error_type", "attempts", "link")} == {
        "workflow": "wf", "window": "2026-10-05", "status": "FAILED", "reason": "Unable to compile <query>",
        "error_type": "QUERY", "attempts": 2, "link": "http://ui:3000/assets/amc/wf?partition=2026-10-05"}
    assert partition_link("http://ui", "wf", "2026-10-05T00:00") == "http://ui/assets/amc/wf?partition=2026-10-05T00%3A00"


def test_problem_kinds_are_stable_while_figures_move():
    assert problem_slug("poller stale: 3 active executions not checked") == "poller-stale"
    assert problem_slug("error rate 75% over the last 24 h (3 of 4)") == "error-rate"
    assert problem_slug("notifications to team-slack failing: HTTP 500") == "notifications-to-team-slack-failing"
    assert problem_slug("the last monitor pass could not reach AMC (outage)") == "the-last-monitor-pass-could-not"
