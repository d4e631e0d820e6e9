"""SQLite persistence across restarts, saved workflows, the admin HTTP API and config loading."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from amc_pipeline.simulator import Fault, Scenario, SimulatorConfig, SimulatorServer
from amc_pipeline_tests.constants import CLIENT_SECRET, FAST_LIFECYCLE, INSTANCE_ID

from .api import Api


def test_executions_survive_restart(tmp_path: Path) -> None:
    db = tmp_path / "sim.sqlite"
    with SimulatorServer(SimulatorConfig(**FAST_LIFECYCLE), db_path=db) as sim:
        api = Api(sim)
        try:
            first = api.create(workflow_id="keep-1").json()["workflowExecutionId"]
            done = api.succeeded(workflow_id="keep-2")
            cancelled = api.create(workflow_id="keep-3").json()["workflowExecutionId"]
            api.cancel(cancelled)
            token = api.token
            files = sim.served_files(done)
        finally:
            api.close()
    with SimulatorServer(SimulatorConfig(**FAST_LIFECYCLE), db_path=db) as sim:
        api = Api(sim)
        try:
            api.token = token  # issued tokens survive too
            assert api.get(first).json()["status"] == "SUCCEEDED"  # the clock offset was kept
            assert api.get(cancelled).json()["status"] == "CANCELLED"
            assert api.get(done).json()["status"] == "SUCCEEDED"
            assert sim.served_files(done) == files
            assert len(sim.executions()) == 3
        finally:
            api.close()


def test_in_memory_by_default() -> None:
    with SimulatorServer(SimulatorConfig(**FAST_LIFECYCLE)) as sim:
        api = Api(sim)
        try:
            api.create()
        finally:
            api.close()
    with SimulatorServer(SimulatorConfig(**FAST_LIFECYCLE)) as sim:
        assert sim.executions() == []


def test_saved_workflows_crud_and_execution_by_workflow_id(api: Api) -> None:
    create = api.request("POST", "/workflows", json={"workflowId": "saved-1", "sqlQuery": "SELECT 1 FROM t"})
    assert create.status_code == 200 and create.json() == {}
    assert api.request("POST", "/workflows", json={"workflowId": "saved-1", "sqlQuery": "x"}).status_code == 400
    assert api.request("POST", "/workflows", json={"workflowId": "saved-2"}).status_code == 400
    assert api.request("GET", "/workflows/saved-1").json() == {"workflowId": "saved-1", "sqlQuery": "SELECT 1 FROM t"}
    update = api.request("PUT", "/workflows/saved-1", json={"workflowId": "saved-1", "sqlQuery": "SELECT 2 FROM t"})
    assert update.status_code == 200
    listed = api.request("GET", "/workflows").json()["workflows"]
    assert listed == [{"workflowId": "saved-1", "sqlQuery": "SELECT 2 FROM t"}]
    body = {
        "workflowId": "saved-1",
        "timeWindowType": "EXPLICIT",
        "timeWindowStart": "2024-01-01T00:00:00",
        "timeWindowEnd": "2024-01-02T00:00:00",
    }
    assert api.create(body).status_code == 200
    assert api.create(dict(body, workflowId="not-saved")).status_code == 404
    assert api.request("DELETE", "/workflows/saved-1").status_code == 200
    assert api.request("GET", "/workflows/saved-1").status_code == 404
    assert api.request("DELETE", "/workflows/saved-1").status_code == 404


def test_admin_http_api(sim: SimulatorServer, api: Api) -> None:
    admin = httpx.Client(base_url=sim.url + "/_simulator", timeout=10)
    try:
        assert admin.get("/health").json()["ok"] is True
        admin.post("/scenarios", json={"workflow_key": "adm", "scenario": {"kind": "fail"}}).raise_for_status()
        assert admin.get("/scenarios").json()["adm"]["kind"] == "fail"
        admin.post("/faults", json={"kind": "throttle", "endpoint": "get", "times": 1}).raise_for_status()
        assert admin.get("/faults").json()[0]["remaining"] == 1
        assert api.get("x").status_code == 429
        execution_id = api.create(workflow_id="adm-1").json()["workflowExecutionId"]
        admin.post("/advance-clock", json={"seconds": 5}).raise_for_status()
        records = admin.get("/executions", params={"instance_id": INSTANCE_ID}).json()
        assert [(r["workflowExecutionId"], r["status"]) for r in records] == [(execution_id, "FAILED")]
        assert admin.get("/stats").json() == {"token": 1, "get": 1, "create": 1}
        admin.post("/instances", json={"instance_id": "i2", "advertiser_id": "A", "marketplace_id": "M"})
        assert admin.get("/instances").json()["i2"] == {"advertiser_id": "A", "marketplace_id": "M"}
        admin.post("/revoke-tokens").raise_for_status()
        assert api.list(workflowId="x").status_code == 401
        admin.post("/reset").raise_for_status()
        assert sim.executions() == [] and sim.stats() == {}
        assert admin.post("/faults", json={"kind": "nonsense"}).status_code == 400
        assert admin.delete("/faults").json() == []
    finally:
        admin.close()


def test_config_from_dict_and_file(tmp_path: Path) -> None:
    data = {
        "pending_seconds": 0.1,
        "instances": {"amcx": ["ENTITYX", "ATVPDKIKX0DER"], "amcy": {"advertiser_id": "Y", "marketplace_id": "M"}},
        "scenarios": {"daily": {"kind": "fail", "failure_reason": "boom"}},
        "faults": [{"kind": "throttle", "endpoint": "create", "times": 1}],
        "seed": 3,
    }
    config = SimulatorConfig.from_dict(data)
    assert config.instances["amcx"] == ("ENTITYX", "ATVPDKIKX0DER")
    assert config.instances["amcy"] == ("Y", "M")
    assert config.scenarios["daily"] == Scenario(kind="fail", failure_reason="boom")
    assert config.faults == [Fault(kind="throttle", endpoint="create", times=1)]
    path = tmp_path / "sim.json"
    path.write_text(json.dumps(data))
    assert SimulatorConfig.from_file(path).scenarios == config.scenarios
    yaml_path = tmp_path / "sim.yaml"
    yaml_path.write_text("pending_seconds: 0.5\nscenarios:\n  x: {kind: stuck_pending}\n")
    assert SimulatorConfig.from_file(yaml_path).scenarios["x"].kind == "stuck_pending"
    with pytest.raises(ValueError, match="unknown simulator config field"):
        SimulatorConfig.from_dict({"pendin_seconds": 1})
    with pytest.raises(ValueError, match="unknown scenario kind"):
        Scenario(kind="explode")
    assert CLIENT_SECRET not in repr(config)


def test_server_stops_cleanly_even_if_body_raises() -> None:
    server = SimulatorServer(SimulatorConfig(**FAST_LIFECYCLE))
    with pytest.raises(RuntimeError, match="boom"), server:
        url = server.url
        assert httpx.get(url + "/_simulator/health").status_code == 200
        raise RuntimeError("boom")
    assert server._thread is None
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/_simulator/health", timeout=2)


def test_serve_blocks_and_answers(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = (
        "from amc_pipeline.simulator import serve, SimulatorConfig;"
        f"serve(SimulatorConfig(pending_seconds=0.1), '127.0.0.1', {port}, {str(tmp_path / 'db.sqlite')!r})"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(200):
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/_simulator/health", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None:
                    raise AssertionError(proc.stderr.read().decode() if proc.stderr else "serve exited") from None
                time.sleep(0.05)
        else:
            raise AssertionError("serve() never answered")
        assert response.json()["ok"] is True
        assert (tmp_path / "db.sqlite").exists()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
