"""Run the simulator: `SimulatorServer` (background thread, for tests and the embedded demo) and
`serve` (blocking, for the `amc-pipeline simulator` CLI)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from amc_pipeline.simulator.app import SimulatorApp
from amc_pipeline.simulator.config import Fault, Scenario, SimulatorConfig
from amc_pipeline.simulator.state import SimulatorState


def create_app(config: SimulatorConfig | None = None, db_path: str | Path | None = None) -> SimulatorApp:
    """The ASGI app over a fresh state (its `.state` is the Python handle)."""
    return SimulatorApp(SimulatorState(config, db_path))


class SimulatorServer:
    """The simulator on a real socket in a background thread.

    Use as a context manager; `port=0` picks a free port. Leaving the block (normally or by an
    exception) stops uvicorn and joins the thread.
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        db_path: str | Path | None = None,
    ) -> None:
        self.config = config or SimulatorConfig()
        self.host = host
        self.port = port
        self.db_path = db_path
        self.state: SimulatorState | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> SimulatorServer:
        if self._thread is not None:
            return self
        self.state = SimulatorState(self.config, self.db_path)
        app = SimulatorApp(self.state)
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            self.state.close()
            raise
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=30)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"amc-simulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("AMC simulator failed to start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()
        if self.state is not None:
            self.state.close()
        self._thread = None
        self._server = None
        self._socket = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"SimulatorServer(url={self.url!r})"

    # ------------------------------------------------------------ addresses
    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def token_url(self) -> str:
        return self.url + "/auth/o2/token"

    @property
    def api_url(self) -> str:
        return self.url

    # ------------------------------------------------------------ control (mirrors /_simulator/)
    def _state(self) -> SimulatorState:
        if self.state is None:
            raise RuntimeError("SimulatorServer is not running")
        return self.state

    def set_scenario(self, workflow_key: str, scenario: Scenario) -> None:
        self._state().set_scenario(workflow_key, scenario)

    def clear_scenarios(self) -> None:
        self._state().clear_scenarios()

    def add_fault(self, fault: Fault) -> None:
        self._state().add_fault(fault)

    def clear_faults(self) -> None:
        self._state().clear_faults()

    def executions(self, instance_id: str | None = None) -> list[dict[str, Any]]:
        state = self._state()
        state.run_schedules()
        now = state.now()
        return [state.view(r, now) for r in state.list_records(instance_id)]

    def stats(self) -> dict[str, int]:
        return self._state().stats()

    def revoke_tokens(self) -> None:
        self._state().revoke_tokens()

    def revoke_account(self, client_id: str) -> None:
        """Revoke one account's refresh token (and its access tokens); the others keep working."""
        self._state().revoke_account(client_id)

    def accounts(self) -> dict[str, dict[str, Any]]:
        """Per client id: instances, limit, the peak of executions active at once, refused creates."""
        return self._state().accounts.summary()

    def advance_clock(self, seconds: float) -> None:
        self._state().advance_clock(seconds)

    def served_files(self, execution_id: str) -> list[bytes]:
        return [p.read_bytes() for p in self._state().result_files(execution_id)]

    def register_instance(self, instance_id: str, advertiser_id: str, marketplace_id: str) -> None:
        self._state().register_instance(instance_id, advertiser_id, marketplace_id)

    def reset(self) -> None:
        self._state().reset()


def serve(
    config: SimulatorConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    db_path: str | Path | None = None,
) -> None:
    """Run the simulator in the foreground until interrupted (Ctrl-C)."""
    state = SimulatorState(config, db_path)
    try:
        # no access log: it would print pre-signed URL query strings, which are credentials
        uvicorn.run(SimulatorApp(state), host=host, port=port, log_level="info", lifespan="off", access_log=False)
    finally:
        state.close()
