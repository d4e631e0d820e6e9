"""SIGTERM to `amc-pipeline demo` (as a supervisor or `docker stop` sends it) stops everything it started."""

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from amc_pipeline.config import PROJECT_ROOT
from amc_pipeline_tests.e2e.stack import free_port, wait_until

pytestmark = pytest.mark.e2e


def _marked(marker: str) -> dict[int, str]:
    """pid → command line of every live process whose environment carries `marker`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def _ui_up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_sigterm_stops_every_process_of_the_demo(tmp_path):
    marker = f"AMC_DEMO_STOP_TEST={uuid.uuid4().hex}"
    name, value = marker.split("=")
    port, sim_port = free_port(), free_port()
    env = {**os.environ, name: value, "DAGSTER_HOME": str(tmp_path / "home"),
           "AMC_PIPELINE_DATA_DIR": str(tmp_path / "data")}
    log = (tmp_path / "demo.log").open("wb")
    demo = subprocess.Popen([sys.executable, "-m", "amc_pipeline.cli", "demo", "--port", str(port),
                             "--sim-port", str(sim_port)], env=env, cwd=PROJECT_ROOT, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        wait_until("the demo's UI", lambda: _ui_up(port), timeout=240,
                   on_timeout=lambda: (tmp_path / "demo.log").read_text()[-3000:])
        wait_until("the daemon and a code server", lambda: sum(
            "daemon" in cmd or "grpc" in cmd or "code-server" in cmd for cmd in _marked(marker).values()) >= 2,
                   timeout=120, on_timeout=lambda: repr(_marked(marker)))
        started = _marked(marker)
        assert len(started) >= 4, started  # demo, dagster dev, webserver, daemon (+ code servers)

        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=90) is not None
        # Gone when the demo has exited, not some time later: before, a code server outlived it.
        wait_until("every demo process gone", lambda: not _marked(marker), timeout=2, interval=0.2,
                   on_timeout=lambda: f"still running after the demo exited: {_marked(marker)}")
        assert not _ui_up(port)
    finally:
        for pid in _marked(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        log.close()
