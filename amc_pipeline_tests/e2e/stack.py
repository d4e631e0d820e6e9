"""A real running stack for end-to-end tests: the AMC simulator, dagster-webserver and dagster-daemon.

Each runs as its own subprocess (own session, so teardown can kill the whole process group, code
servers and run workers included) on a free port, with a temp DAGSTER_HOME (the project's
dagster.yaml copied in, telemetry off, optionally PostgreSQL storage), a temp data dir and test YAML
configs. Why webserver + daemon instead of `dagster dev`: the restart test must SIGKILL the daemon
alone while the webserver (and the GraphQL API the test talks to) stays up; `dagster dev` owns both
and would take the UI down with it. Both load the same workspace (the project's workspace.yaml,
location `amc_pipeline`), exactly what `dagster dev` would load.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from amc_pipeline.config import PROJECT_ROOT
from amc_pipeline_tests.constants import INSTANCE

BIN = Path(sys.executable).parent
FAST_MONITOR = {
    "sensor_interval_seconds": 2,
    "poll_initial_seconds": 1,
    "poll_max_seconds": 3,
    "check_interval_seconds": 10,
    "metrics_cron": "* * * * *",
    "retry_base_seconds": 1,
    "retry_max_seconds": 3,
    "ambiguous_grace_seconds": 2,
    "landing_retry_seconds": 2,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(what: str, predicate: Callable[[], Any], *, timeout: float, interval: float = 0.5,
               on_timeout: Callable[[], str] | None = None) -> Any:
    """Poll `predicate` until it returns something truthy; bounded, with a message naming `what`."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (httpx.HTTPError, OSError, KeyError, ValueError) as exc:
            last_error = exc
        if time.monotonic() > deadline:
            extra = on_timeout() if on_timeout else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}"
                                 f"{f' (last error: {last_error!r})' if last_error else ''}\n{extra}")
        time.sleep(interval)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Stack:
    """Paths, ports and processes of one running stack; `start()` brings it up, `stop()` tears it down."""

    root: Path
    workflows: list[dict[str, Any]]
    sim_config: dict[str, Any]
    monitor: dict[str, Any] = field(default_factory=lambda: dict(FAST_MONITOR))
    dagster_storage: dict[str, Any] | None = None
    store_url: str | None = None
    #: A `notifications:` block for the pipeline YAML, and environment the processes get on top.
    notifications: dict[str, Any] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    #: `accounts:` and `instances:` for the pipeline YAML (default: no accounts block, the one INSTANCE).
    accounts: list[dict[str, Any]] | None = None
    instances: list[dict[str, Any]] | None = None
    procs: dict[str, Proc] = field(default_factory=dict)
    all_procs: list[Proc] = field(default_factory=list)
    sim_port: int = 0
    web_port: int = 0
    daemon_starts: int = 0

    # ------------------------------------------------------------------ layout
    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def credentials(self) -> dict[str, str]:
        cfg = self.sim_config
        return {"client_id": cfg["client_id"], "client_secret": cfg["client_secret"],
                "refresh_token": cfg["refresh_token"]}

    def write_files(self) -> None:
        for folder in (self.dagster_home, self.data_dir, self.logs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        instance_yaml = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text()) or {}
        instance_yaml["telemetry"] = {"enabled": False}
        if self.dagster_storage:
            instance_yaml["storage"] = self.dagster_storage
        (self.dagster_home / "dagster.yaml").write_text(yaml.safe_dump(instance_yaml, sort_keys=False))
        base = {"partitions": "daily", "data_lag_days": 0}
        one = {"instance_id": INSTANCE["instance_id"]}  # unless the workflow fans out over `instances`
        pipeline = {
            **({"accounts": self.accounts} if self.accounts else {}),
            "instances": self.instances or [INSTANCE],
            "workflows": [{**base, **({} if "instances" in w else one), **w} for w in self.workflows],
            "monitor": self.monitor,
            **({"notifications": self.notifications} if self.notifications else {}),
        }
        (self.root / "pipeline.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
        sim = {"instances": {INSTANCE["instance_id"]: [INSTANCE["advertiser_id"], INSTANCE["marketplace_id"]]},
               **self.sim_config}
        (self.root / "sim.yaml").write_text(yaml.safe_dump(sim, sort_keys=False))

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AMC_", "DAGSTER_"))}
        env.update({
            "DAGSTER_HOME": str(self.dagster_home),
            "AMC_PIPELINE_CONFIG": str(self.root / "pipeline.yaml"),
            "AMC_PIPELINE_DATA_DIR": str(self.data_dir),
            "AMC_API_URL": self.sim_url,
            "AMC_TOKEN_URL": self.sim_url + "/auth/o2/token",
            "AMC_CLIENT_ID": self.sim_config["client_id"],
            "AMC_CLIENT_SECRET": self.sim_config["client_secret"],
            "AMC_REFRESH_TOKEN": self.sim_config["refresh_token"],
            "PYTHONUNBUFFERED": "1",
        })
        if self.store_url:
            env["AMC_PIPELINE_DATABASE_URL"] = self.store_url
        env.update(self.extra_env)
        return env

    # ------------------------------------------------------------------ processes
    def _spawn(self, name: str, cmd: list[str]) -> Proc:
        log_path = self.logs_dir / f"{name}-{len(self.all_procs)}.log"
        log = open(log_path, "wb")  # noqa: SIM115 - the child owns it; closed below
        try:
            popen = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        proc = Proc(name, popen, log_path)
        self.procs[name] = proc
        self.all_procs.append(proc)
        return proc

    def start(self, *, daemon: bool = True) -> "Stack":
        """Simulator and webserver (and the daemon unless `daemon=False`), then wait until they answer."""
        self.sim_port, self.web_port = free_port(), free_port()
        self.write_files()
        self._spawn("simulator", [str(BIN / "amc-pipeline"), "simulator", "--port", str(self.sim_port),
                                  "--config", str(self.root / "sim.yaml")])
        workspace = str(PROJECT_ROOT / "workspace.yaml")
        self._spawn("webserver", [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.web_port),
                                  "-w", workspace])
        if daemon:
            self.start_daemon()
        wait_until("the simulator's /_simulator/health", lambda: self.sim_get("/_simulator/health")["ok"],
                   timeout=30, on_timeout=self.dump_logs)
        wait_until("the webserver's GraphQL API", self._code_location_loaded, timeout=120, interval=1,
                   on_timeout=self.dump_logs)
        return self

    def start_daemon(self) -> Proc:
        self.daemon_starts += 1
        return self._spawn("daemon", [str(BIN / "dagster-daemon"), "run", "-w",
                                      str(PROJECT_ROOT / "workspace.yaml")])

    def kill_daemon(self) -> None:
        """SIGKILL the daemon process alone (its code server and run workers live on, as after a crash)."""
        proc = self.procs["daemon"]
        proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait(timeout=10)

    def daemon_healthy(self) -> bool:
        data = self.graphql("{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }")
        statuses = data["instance"]["daemonHealth"]["allDaemonStatuses"]
        wanted = {"SENSOR", "BACKFILL", "QUEUED_RUN_COORDINATOR"}
        return all(s["healthy"] for s in statuses if s["daemonType"] in wanted)

    def _code_location_loaded(self) -> bool:
        data = self.graphql("""{ version workspaceOrError { __typename ... on Workspace { locationEntries {
            name locationOrLoadError { __typename ... on PythonError { message } } } } } }""")
        entries = data["workspaceOrError"]["locationEntries"]
        for entry in entries:
            if entry["locationOrLoadError"] and entry["locationOrLoadError"]["__typename"] == "PythonError":
                raise AssertionError(f"code location failed to load: {entry['locationOrLoadError']['message']}")
        return bool(data["version"]) and any(
            e["locationOrLoadError"] and e["locationOrLoadError"]["__typename"] == "RepositoryLocation"
            for e in entries)

    def stop(self) -> None:
        """Kill every process group this stack started (webserver/daemon children included)."""
        for proc in reversed(self.all_procs):
            if proc.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.all_procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        for proc in self.all_procs:
            # the group may still hold code servers or run workers even when the leader has exited
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.popen.pid, signal.SIGKILL)
            if proc.popen.poll() is None:
                proc.popen.wait(timeout=10)

    def dump_logs(self, lines: int = 60) -> str:
        parts = []
        for proc in self.all_procs:
            state = "running" if proc.alive() else f"exited {proc.popen.returncode}"
            parts.append(f"----- {proc.name} (pid {proc.popen.pid}, {state}) {proc.log_path} -----\n"
                         f"{proc.tail(lines)}")
        return "\n".join(parts)

    def log_texts(self) -> dict[str, str]:
        return {p.log_path.name: p.log_path.read_text(encoding="utf-8", errors="replace") for p in self.all_procs}

    # ------------------------------------------------------------------ HTTP
    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(self.web_url + "/graphql", json={"query": query, "variables": variables or {}},
                              timeout=60)
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise AssertionError(f"GraphQL errors: {json.dumps(body['errors'])[:2000]}")
        return body["data"]

    def sim_get(self, path: str) -> Any:
        response = httpx.get(self.sim_url + path, timeout=30)
        response.raise_for_status()
        return response.json()


def cleanup_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
