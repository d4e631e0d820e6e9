"""Notifications against the simulator, a real store, a real Dagster instance and real HTTP receivers.

Exactly one message per event per target across ticks, retries and a daemon restart (a fresh process);
none while idle; 500-then-200 delivered once; a dead endpoint shows in health and never raises;
recovery sends `recovered`; the secret URL appears nowhere (store tables, files, logs, event log).
"""

import os
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml
from sqlalchemy import MetaData, select

from amc_pipeline.config import PipelineConfig, parse_config
from amc_pipeline.definitions import build_definitions
from amc_pipeline.defs.notifications import SENSOR_NAME
from amc_pipeline.defs.resources import StoreResource
from amc_pipeline.health.status import monitor_health
from amc_pipeline.notify.service import notify_pass
from amc_pipeline.simulator import Scenario
from amc_pipeline_tests.harness import rig
from amc_pipeline_tests.notify.receiver import Receiver, dead_url
from amc_pipeline_tests.results.test_assets import materialize, sim_environment

UI = "http://dagster.example:3000"
WORKFLOWS = [
    {"name": "good", "sql": "SELECT 1"},
    {"name": "broken", "sql": "SELECT x FROM nowhere"},
    {"name": "slowpoke", "sql": "SELECT 2", "stuck_pending_minutes": 1},
]
SCENARIOS = {"broken": Scenario(kind="sql_error"), "slowpoke": Scenario(kind="stuck_pending"),
             "good": Scenario(kind="succeed", rows=3)}
DAY = "2026-10-05"


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("AMC_PIPELINE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def with_notifications(config: PipelineConfig, targets: list[dict], **settings) -> PipelineConfig:
    data = config.model_dump(mode="json")
    data["notifications"] = {"dagster_ui_url": UI, "targets": targets, "retry_base_seconds": 0.2,
                             "retry_max_seconds": 1, **settings}
    return parse_config(data)


def db_url(r) -> str:
    return r.store.engine.url.render_as_string(hide_password=False)


def tick(defs: dg.Definitions, instance: dg.DagsterInstance, r) -> dg.SensorResult:
    """One sensor evaluation with fresh resources (as every daemon tick has)."""
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    before = len(instance.get_runs())
    context = dg.build_sensor_context(instance=instance, resources={"amc_store": StoreResource(database_url=db_url(r))})
    result = sensor.evaluate_tick(context)
    assert not result.run_requests and len(instance.get_runs()) == before  # a tick launches nothing
    return result


def kinds(receiver: Receiver) -> list[tuple[str, str]]:
    """(event kind, workflow) of every accepted POST, from Slack's headline or the webhook's fields."""
    out = []
    for post in receiver.delivered():
        body = post.body
        if "event" in body:
            out.append((body["event"], body["workflow"]))
        else:
            headline = body["text"].splitlines()[0]
            kind = next(k for k, mark in (("recovered", "recovered"), ("stuck", "stuck:"), ("unhealthy", "unhealthy"),
                                         ("failed", "")) if mark in headline)
            workflow = headline.split("amc/")[1].split()[0] if "amc/" in headline else None
            out.append((kind, workflow))
    return sorted(out, key=lambda x: (x[0], x[1] or ""))


def assert_once(*receivers: Receiver) -> None:
    for receiver in receivers:
        counts = Counter(p.headers["idempotency-key"] for p in receiver.delivered())
        assert all(n == 1 for n in counts.values()), counts


def dump_tables(r) -> str:
    meta = MetaData()
    meta.reflect(r.store.engine)
    assert "amc_notifications" in meta.tables
    with r.store.engine.connect() as conn:
        return "\n".join(repr(row) for table in meta.tables.values() for row in conn.execute(select(table)))


def files_containing(root: Path, secret: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_one_message_per_event_across_ticks_restart_and_recovery(env, monkeypatch, caplog, capfd):
    token = secrets.token_hex(20)
    with Receiver() as slack, Receiver() as hook, \
            rig(WORKFLOWS, database_url=f"sqlite:///{env / 's.db'}", scenarios=SCENARIOS) as r:
        sim_environment(monkeypatch, r)
        monkeypatch.setenv("AMC_TEST_SLACK_URL", slack.url(token))
        monkeypatch.setenv("AMC_TEST_HOOK_URL", hook.url(token + "h"))
        config = with_notifications(r.config, [
            {"name": "team-slack", "kind": "slack", "url_env": "AMC_TEST_SLACK_URL"},
            {"name": "pager", "kind": "webhook", "url_env": "AMC_TEST_HOOK_URL", "events": ["failed", "recovered"],
             "workflows": ["broken"]},
        ])
        defs = build_definitions(config)
        assert build_definitions(r.config).sensors and SENSOR_NAME not in {
            s.name for s in build_definitions(r.config).sensors}  # not configured: no sensor
        with dg.instance_for_test() as instance:
            # Idle: nothing to say, nothing sent, no run.
            for _ in range(2):
                assert "sent 0" in tick(defs, instance, r).skip_message
            assert slack.posts == hook.posts == [] and r.store.list_notifications() == []

            # AMC rejects broken's SQL; slowpoke stays PENDING past its 1-minute limit.
            for name in ("good", "broken", "slowpoke"):
                r.request(name, DAY)
            r.drive(lambda: r.status("good", DAY) == "SUCCESS" and r.status("broken", DAY) == "FAILED"
                    and r.status("slowpoke", DAY) == "PENDING")
            slow = r.store.get_live("slowpoke", DAY).attempt
            r.store.update_attempt(slow.id, status_changed_at=datetime.now(UTC) - timedelta(minutes=10))
            tick(defs, instance, r)
            assert kinds(slack) == [("failed", "broken"), ("stuck", "slowpoke")]
            assert kinds(hook) == [("failed", "broken")]
            [failed] = hook.delivered()
            body = failed.body
            assert (body["workflow"], body["window"], body["status"], body["error_type"], body["attempts"]) == (
                "broken", DAY, "FAILED", "QUERY", 1)
            assert "Unable to compile" in body["reason"]
            assert body["link"] == f"{UI}/assets/amc/broken?partition={DAY}"
            assert body["amc_execution_id"] == r.store.get_live("broken", DAY).attempt.amc_execution_id
            slack_failed = next(p.body for p in slack.delivered() if "FAILED" in p.body["text"].splitlines()[0])
            assert "amc/broken window 2026-10-05 FAILED" in slack_failed["text"]
            assert "Unable to compile" in slack_failed["text"]
            assert f"<{UI}/assets/amc/broken?partition={DAY}|Open in Dagster>" in str(slack_failed["blocks"])
            slack_stuck = next(p.body for p in slack.delivered() if "stuck" in p.body["text"].splitlines()[0])
            assert "PENDING for" in slack_stuck["text"] and slow.amc_execution_id in slack_stuck["text"]

            # More ticks: nothing new.
            for _ in range(3):
                tick(defs, instance, r)
            assert len(slack.posts) == 2 and len(hook.posts) == 1

            # A second window fails, then the daemon restarts: a fresh process, fresh resources, same store.
            r.request("broken", "2026-10-06")
            r.drive(lambda: r.status("broken", "2026-10-06") == "FAILED")
            cfg = env / "pipeline.yaml"
            cfg.write_text(yaml.safe_dump(config.model_dump(mode="json")))
            for _ in range(2):
                child = subprocess.run(
                    [sys.executable, "-m", "amc_pipeline_tests.notify.tick_child", str(cfg), db_url(r)],
                    capture_output=True, text=True, timeout=180, env=dict(os.environ))
                assert child.returncode == 0, child.stderr
                assert "runs=0" in child.stdout
                assert token not in child.stdout + child.stderr
            assert kinds(slack) == [("failed", "broken"), ("failed", "broken"), ("stuck", "slowpoke")]
            assert kinds(hook) == [("failed", "broken"), ("failed", "broken")]
            assert {p.body["window"] for p in hook.delivered()} == {DAY, "2026-10-06"}
            tick(defs, instance, r)
            assert len(slack.posts) == 3 and len(hook.posts) == 2

            # Recovery: broken re-queued, succeeds and lands; slowpoke is no longer stuck.
            r.sim.set_scenario("broken", Scenario(kind="succeed", rows=2))
            r.request("broken", DAY, force_new=True)
            tick(defs, instance, r)  # re-queued is not recovered
            assert len(slack.posts) == 3
            r.drive(lambda: r.status("broken", DAY) == "SUCCESS")
            assert materialize(r, defs, "broken", DAY, instance).success
            r.store.update_attempt(slow.id, status_changed_at=datetime.now(UTC))
            tick(defs, instance, r)
            tick(defs, instance, r)
            assert kinds(slack) == [("failed", "broken"), ("failed", "broken"), ("recovered", "broken"),
                                    ("recovered", "slowpoke"), ("stuck", "slowpoke")]
            assert kinds(hook) == [("failed", "broken"), ("failed", "broken"), ("recovered", "broken")]
            recovered = next(p.body for p in hook.delivered() if p.body["event"] == "recovered")
            assert (recovered["window"], recovered["status"]) == (DAY, "SUCCESS")
            assert "landed 2 rows" in recovered["detail"]
            for _ in range(2):
                tick(defs, instance, r)
            assert len(slack.posts) == 5 and len(hook.posts) == 3
            assert_once(slack, hook)
            assert monitor_health(r.store, config).healthy

            # The secret URL is nowhere: store tables, files on disk, logs, the instance's storage.
            for secret in (token, slack.url(token), hook.url(token + "h")):
                assert secret not in dump_tables(r)
                assert files_containing(env, secret) == []
                assert files_containing(Path(instance.root_directory), secret) == []
                assert secret not in caplog.text
            assert instance.get_runs()  # the landing run's event log is there to search
            for run in instance.get_runs():
                assert token not in repr(instance.all_logs(run.run_id))
        out, err = capfd.readouterr()
        assert token not in out + err


def test_500_then_200_is_delivered_once_after_retry(env, monkeypatch):
    token = secrets.token_hex(20)
    with Receiver(answers=[500, 500, 200]) as hook, \
            rig([WORKFLOWS[1]], database_url=f"sqlite:///{env / 's.db'}", scenarios=SCENARIOS) as r:
        monkeypatch.setenv("AMC_TEST_HOOK_URL", hook.url(token))
        config = with_notifications(r.config, [{"name": "hook", "kind": "webhook", "url_env": "AMC_TEST_HOOK_URL"}])
        defs = build_definitions(config)
        r.request("broken", DAY)
        r.drive(lambda: r.status("broken", DAY) == "FAILED")
        with dg.instance_for_test() as instance:
            first = tick(defs, instance, r)
            assert [p.answered for p in hook.posts] == [500, 500]  # a quick second try within the tick
            assert "failing: hook: HTTP 500" in first.skip_message
            [row] = r.store.list_notifications()
            assert row.sent_at is None and row.attempts == 1 and row.last_error.startswith("HTTP 500")
            assert token not in row.last_error and "***" in row.last_error  # the echoed path is scrubbed
            assert any(p.startswith("notifications to hook failing: HTTP 500")
                       for p in monitor_health(r.store, config).problems)
            time.sleep(0.3)  # past retry_base_seconds
            tick(defs, instance, r)
            assert [p.answered for p in hook.posts] == [500, 500, 200]
            assert len({p.headers["idempotency-key"] for p in hook.posts}) == 1
            [row] = r.store.list_notifications()
            assert row.sent_at is not None and row.attempts == 2 and row.last_error is None
            assert monitor_health(r.store, config).healthy
            time.sleep(0.3)
            tick(defs, instance, r)
            assert len(hook.posts) == 3 and len(hook.delivered()) == 1
            assert token not in dump_tables(r)


def test_dead_endpoint_shows_in_health_and_is_delivered_when_back(env, monkeypatch):
    token = secrets.token_hex(20)
    with Receiver() as ops, Receiver() as back, \
            rig([WORKFLOWS[1]], database_url=f"sqlite:///{env / 's.db'}", scenarios=SCENARIOS) as r:
        monkeypatch.setenv("AMC_TEST_DEAD_URL", dead_url(token))
        monkeypatch.setenv("AMC_TEST_OPS_URL", ops.url(token + "o"))
        config = with_notifications(r.config, [
            {"name": "dead", "kind": "webhook", "url_env": "AMC_TEST_DEAD_URL", "timeout_seconds": 1},
            {"name": "ops", "kind": "slack", "url_env": "AMC_TEST_OPS_URL", "events": ["unhealthy", "recovered"]},
        ], retry_base_seconds=0.5)
        defs = build_definitions(config)
        r.request("broken", DAY)
        r.drive(lambda: r.status("broken", DAY) == "FAILED")
        with dg.instance_for_test() as instance:
            started = time.monotonic()
            first = tick(defs, instance, r)  # never raises
            assert time.monotonic() - started < 5
            assert "failing: dead: ConnectError" in first.skip_message
            health = monitor_health(r.store, config)
            [problem] = health.problems
            assert problem.startswith("notifications to dead failing: ConnectError") and token not in problem
            tick(defs, instance, r)  # the other target hears that "dead" is failing, once
            tick(defs, instance, r)
            [unhealthy] = ops.delivered()
            assert "AMC pipeline unhealthy: notifications to dead failing" in unhealthy.body["text"]
            assert f"{UI}/assets/amc/execution_metrics" in str(unhealthy.body["blocks"])

            # The endpoint comes back (its variable now points at a live receiver).
            monkeypatch.setenv("AMC_TEST_DEAD_URL", back.url(token + "b"))
            time.sleep(1.1)  # past the backoff of the tries so far
            tick(defs, instance, r)
            [delivered] = back.delivered()
            assert (delivered.body["event"], delivered.body["workflow"]) == ("failed", "broken")
            assert monitor_health(r.store, config).healthy
            tick(defs, instance, r)
            assert [p.body["text"].splitlines()[0] for p in ops.delivered()] == [
                unhealthy.body["text"].splitlines()[0],
                "✅ AMC pipeline healthy again: " + unhealthy.body["text"].splitlines()[0].split(": ", 1)[1]]
            for _ in range(2):
                tick(defs, instance, r)
            assert len(ops.delivered()) == 2 and len(back.delivered()) == 1
            assert token not in dump_tables(r)


def test_two_evaluations_at_once_send_each_event_once(env, monkeypatch):
    token = secrets.token_hex(20)
    with Receiver(delay=0.2) as hook, \
            rig([WORKFLOWS[1]], database_url=f"sqlite:///{env / 's.db'}", scenarios=SCENARIOS) as r:
        monkeypatch.setenv("AMC_TEST_HOOK_URL", hook.url(token))
        config = with_notifications(r.config, [{"name": "hook", "kind": "webhook", "url_env": "AMC_TEST_HOOK_URL"}])
        days = ["2026-10-05", "2026-10-06", "2026-10-07", "2026-10-08"]
        for day in days:
            r.request("broken", day)
        r.drive(lambda: all(r.status("broken", d) == "FAILED" for d in days))
        threads = [threading.Thread(target=notify_pass, args=(r.store, config)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        notify_pass(r.store, config)
        assert sorted(p.body["window"] for p in hook.delivered() if p.body["event"] == "failed") == days
        assert_once(hook)
