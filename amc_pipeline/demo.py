"""The main job on embedded defaults: the AMC simulator plus Dagster, with the shipped demo config.

Nothing to configure: the simulator plays AMC (credentials included), the store and results live
under ./data, the Dagster instance under ./.dagster_home. Three workflows show the whole lifecycle:
`campaign_performance` lands daily data, `broken_attribution` fails with an SQL error at create,
`audience_overlap` stays PENDING and trips the stuck check.

Dagster is imported here (outside `defs/`) because driving Dagster is the point: the headless demo
runs the project's jobs in process on a real instance, as the daemon would.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from amc_pipeline.config import PROJECT_ROOT, PipelineConfig, Settings
from amc_pipeline.partitions import partitions_def, window_for
from amc_pipeline.simulator import Scenario, SimulatorConfig, SimulatorServer
from amc_pipeline.store import states

#: What the simulator does for each demo workflow (anything else succeeds with generated rows).
DEMO_SCENARIOS = {
    "broken_attribution": Scenario(kind="sql_error"),
    "audience_overlap": Scenario(kind="stuck_pending"),
}
#: How many of the newest windows of each workflow the demo requests.
DEMO_PARTITIONS = {"campaign_performance": 7, "broken_attribution": 2, "audience_overlap": 1}


def simulator_config(config: PipelineConfig, *, pending_seconds: float = 5.0,
                     running_seconds: float = 10.0) -> SimulatorConfig:
    return SimulatorConfig(
        instances={i.instance_id: (i.advertiser_id, i.marketplace_id) for i in config.instances},
        pending_seconds=pending_seconds,
        running_seconds=running_seconds,
        scenarios=dict(DEMO_SCENARIOS),
    )


def simulator_env(sim: SimulatorServer, sim_config: SimulatorConfig) -> dict[str, str]:
    """Environment that points the pipeline at the simulator, with its (public, fake) credentials."""
    return {
        "AMC_API_URL": sim.url,
        "AMC_TOKEN_URL": sim.token_url,
        "AMC_CLIENT_ID": sim_config.client_id,
        "AMC_CLIENT_SECRET": sim_config.client_secret,
        "AMC_REFRESH_TOKEN": sim_config.refresh_token,
    }


@contextmanager
def patched_environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def request_demo_partitions(config: PipelineConfig, partitions: dict[str, int] | None = None) -> list[str]:
    """Enqueue the newest windows of each demo workflow (what a backfill from the UI would do)."""
    from amc_pipeline.store.cache import store_for

    store = store_for(Settings.from_env().database_url)
    requested = []
    for workflow in config.workflows:
        count = (partitions or DEMO_PARTITIONS).get(workflow.name, 1)
        keys = partitions_def(workflow).get_partition_keys()[-count:]
        for key in keys:
            window = window_for(workflow, key)
            store.enqueue(workflow=workflow.name, instance_id=window.instance_id, partition_key=key,
                          window_start=window.start_utc, window_end=window.end_utc)
            requested.append(f"{workflow.name}/{key}")
    return requested


def simulator_db() -> Path:
    """The simulator keeps its executions beside our store, so a restarted demo finds what it left."""
    data_dir = Settings.from_env().data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir / "simulator.db"


def dagster_home() -> Path:
    home = Path(os.environ.get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


@dataclass
class DemoSummary:
    landed: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)

    def render(self) -> str:
        lines = ["partitions landed (rows):"]
        lines += [f"  {k}: {v}" for k, v in sorted(self.landed.items())] or ["  none"]
        lines.append("executions:")
        lines += [f"  {k}: {v}" for k, v in sorted(self.statuses.items())]
        lines.append("checks:")
        lines += [f"  {k}: {v}" for k, v in sorted(self.checks.items())]
        return "\n".join(lines)


def run_ui(config: PipelineConfig, *, port: int = 3000, sim_port: int = 8765) -> int:
    """Simulator in this process, `dagster dev` as a child; Ctrl-C stops both."""
    sim_config = simulator_config(config)
    with SimulatorServer(sim_config, port=sim_port, db_path=simulator_db()) as sim:
        env = {**os.environ, **simulator_env(sim, sim_config), "DAGSTER_HOME": str(dagster_home())}
        with patched_environ(simulator_env(sim, sim_config)):
            requested = request_demo_partitions(config)
        print(f"AMC simulator on {sim.url}; requested {len(requested)} partitions: {', '.join(requested)}")
        print(f"Dagster UI: http://127.0.0.1:{port} (Ctrl-C stops the demo)", flush=True)
        cmd = [sys.executable, "-m", "dagster", "dev", "-m", "amc_pipeline.definitions",
               "-h", "127.0.0.1", "-p", str(port)]
        # Its own process group: `dagster dev` starts the webserver, the daemon and code servers, and
        # does not pass a SIGTERM on to them. Stopping the whole group leaves no orphan launching runs
        # against a simulator that is gone.
        proc = subprocess.Popen(cmd, env=env, cwd=PROJECT_ROOT, start_new_session=True)

        def stop(signum, frame):  # SIGTERM (e.g. `timeout`, systemd, `docker stop`) stops it all too
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            return stop_process_group(proc)
        finally:
            stop_process_group(proc, grace_seconds=0)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a member we may not signal still counts as alive
        return True
    return True


def stop_process_group(proc: subprocess.Popen, *, grace_seconds: float = 30.0) -> int:
    """Stop `proc` and every process of its group: SIGINT (as Ctrl-C), then SIGTERM, then SIGKILL.

    Returns proc's exit status. Waits for the whole group, not only for `proc`: dagster dev can exit
    before the webserver and daemon it started have.
    """
    pgid = proc.pid
    for sig, wait_seconds in ((signal.SIGINT, grace_seconds), (signal.SIGTERM, min(grace_seconds, 5.0)),
                              (signal.SIGKILL, 5.0)):
        if not _group_alive(pgid):
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline and _group_alive(pgid):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.2)
            if proc.poll() is not None and not _group_alive(pgid):
                break
            time.sleep(0.1)
    return proc.wait()


def run_headless(config: PipelineConfig, *, timeout_seconds: float = 300.0) -> DemoSummary:
    """The demo without the UI: drive the monitor job, landings and checks in this process until done.

    Done means: every requested window is landed or failed, and the stuck one has been PENDING past its
    workflow's `stuck_pending_minutes`, so the final check run shows a passed, a failed and a stuck check.
    """
    import dagster as dg

    from amc_pipeline.definitions import build_definitions
    from amc_pipeline.health.status import stuck_executions
    from amc_pipeline.store.cache import store_for

    sim_config = simulator_config(config, pending_seconds=1.0, running_seconds=2.0)
    with SimulatorServer(sim_config, port=0, db_path=simulator_db()) as sim, \
            patched_environ(simulator_env(sim, sim_config)):
        defs = build_definitions(config)
        store = store_for(Settings.from_env().database_url)
        requested = request_demo_partitions(config)
        print(f"AMC simulator on {sim.url}; requested {len(requested)} partitions", flush=True)
        instance = dg.DagsterInstance.ephemeral()
        monitor = defs.resolve_job_def("amc_monitor")
        started = time.monotonic()
        summary = DemoSummary()
        while time.monotonic() - started < timeout_seconds:
            monitor.execute_in_process(instance=instance, raise_on_error=False)
            for execution in store.landable(datetime.now(UTC)):
                job = defs.resolve_job_def(f"amc_{execution.workflow}_job")
                result = job.execute_in_process(instance=instance, partition_key=execution.partition_key,
                                                raise_on_error=False)
                for check in result.get_asset_check_evaluations():
                    if check.check_name in ("schema_matches_previous", "has_rows"):
                        summary.checks[f"{execution.workflow}/{execution.partition_key}:{check.check_name}"] = (
                            "passed" if check.passed else "FAILED")
            executions = [e for e in store.list_executions() if e.workflow in DEMO_PARTITIONS]
            in_flight = [e for e in executions if e.attempt and e.attempt.status in (states.QUEUED, states.RUNNING)
                         or (e.attempt and e.attempt.status == states.SUCCESS and e.landed_attempt_id != e.attempt.id)]
            pending = [e for e in executions if e.attempt and e.attempt.status == states.PENDING]
            stuck = {s.partition_key for w in config.workflows for s in stuck_executions(store, w)}
            if not in_flight and all(e.partition_key in stuck for e in pending):
                break
            time.sleep(1.0)
        checks_job = defs.resolve_job_def("amc_execution_checks")
        checks = checks_job.execute_in_process(instance=instance, raise_on_error=False)
        for check in checks.get_asset_check_evaluations():
            label = "/".join(check.asset_key.path[1:])
            summary.checks[f"{label}:{check.check_name}"] = (
                "passed" if check.passed else f"{check.severity.value}: {check.description}")
        for execution in store.list_executions():
            label = f"{execution.workflow}/{execution.partition_key}"
            summary.statuses[label] = execution.attempt.status if execution.attempt else "?"
            if execution.rows is not None and execution.landed_at is not None:
                summary.landed[label] = execution.rows
        return summary
