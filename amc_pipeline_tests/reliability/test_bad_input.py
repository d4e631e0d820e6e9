"""Bad input, each with a clear error and nothing lost.

Already covered elsewhere (not repeated here): malformed CSV/JSON at the converter (results/test_convert.py),
a ragged second file and JSON-as-CSV through `land_execution`, download URLs on another host
(results/test_landing.py), path characters and SQL in config names (test_config.py), odd API shapes at
the client (amc/test_shapes.py). Added here: bad files (ragged row, invalid UTF-8, an
HTML error page served with 200, JSON where CSV was expected) through a full Dagster landing that would
replace an earlier version (the error names the file, the previous version is intact, the store records
the failure), partition keys outside the range, and an API answer of unexpected shape reaching the monitor.
"""

import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import httpx
import pytest

from amc_pipeline.amc.client import AsyncAmcClient
from amc_pipeline.definitions import build_definitions
from amc_pipeline.monitor.events import PassReport
from amc_pipeline.monitor.poll import poll_due
from amc_pipeline.results.layout import partition_dir
from amc_pipeline.simulator import Scenario
from amc_pipeline_tests.harness import FAST_RETRY, credentials, rig
from amc_pipeline_tests.reliability.common import failure_text, leftovers, materialize, unreadable_parts

WF = "bad_input"
WORKFLOW = {"name": WF, "sql": "SELECT a, b FROM t", "start_date": "2026-09-01"}
KEY = "2026-09-10"
GOOD = b"a,b\n1,x\n2,y\n"

BAD_FILES = {
    "ragged_row": (b"a,b\n1,x\n2,y,z\n", "result file 1"),
    "invalid_utf8": (b"a,b\n1,x\n2,\xff\xfey\n", "result file 1"),
    "html_error_page_with_200": (b"<!DOCTYPE html><html><body><h1>503 Service Unavailable</h1></body></html>\n",
                                 "result file 1 is an HTML page"),
    "json_where_csv_expected": (b'[{"a": 1, "b": "x"}]', "result file 1 was declared CSV"),
}


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AMC_PIPELINE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_result_file_fails_landing_keeps_previous_version(case, data_dir, tmp_path):
    data, needle = BAD_FILES[case]
    good = write(tmp_path, "good.csv", GOOD)
    bad = write(tmp_path, "bad.csv", data)
    with rig([WORKFLOW], database_url=f"sqlite:///{tmp_path / 's.db'}",
             scenarios={WF: Scenario(result_files=[good])}) as r:
        defs = build_definitions(r.config)
        with dg.instance_for_test() as instance:
            target = partition_dir(data_dir, WF, KEY)
            # A good version first, from the first execution.
            assert materialize(r, defs, WF, KEY, instance).success
            r.drive(lambda: r.status(WF, KEY) == "SUCCESS")
            assert materialize(r, defs, WF, KEY, instance).success
            before = snapshot(target)
            old = r.store.get_live(WF, KEY)
            r.sim.set_scenario(WF, Scenario(result_files=[good, bad]))
            forced = materialize(r, defs, WF, KEY, instance,
                                 run_config={"ops": {f"amc__{WF}": {"config": {"force_new_execution": True}}}})
            assert forced.success and forced.get_asset_materialization_events() == []
            r.drive(lambda: r.status(WF, KEY) == "SUCCESS")
            result = materialize(r, defs, WF, KEY, instance)

            assert not result.success
            assert result.get_asset_materialization_events() == []
            text = failure_text(result)
            assert needle in text, text
            execution = r.store.get_live(WF, KEY)
            assert execution.id != old.id and execution.landed_at is None
            assert execution.land_attempts == 1 and needle in (execution.land_error or "")
            assert snapshot(target) == before  # the previous version, byte for byte
            assert leftovers(data_dir) == [] and unreadable_parts(data_dir) == []
            assert "X-Amz-Signature" not in text and "X-Amz-Signature" not in execution.land_error


@pytest.mark.parametrize("key", ["2020-01-01", "2099-01-01", "2026-13-01", "../../etc"])
def test_partition_key_outside_the_range_is_refused(key, data_dir, tmp_path):
    with rig([WORKFLOW], database_url=f"sqlite:///{tmp_path / 's.db'}") as r:
        defs = build_definitions(r.config)
        with dg.instance_for_test() as instance:
            with pytest.raises(Exception) as info:
                result = materialize(r, defs, WF, key, instance)
                assert result.success, failure_text(result)  # if Dagster ran it, it must have failed
            assert key in str(info.value)
            assert r.store.list_executions() == []  # nothing enqueued
            assert not data_dir.exists() or leftovers(data_dir) == []


class ShapeShiftingProxy:
    """A real HTTP server forwarding to the simulator; while `mangle` is set, a GET of one execution
    answers 200 with JSON of an unexpected shape (what an API change or a proxy could give)."""

    BODY = b'{"workflowExecutions": [{"id": "not the shape you expect"}], "status": 7}'

    def __init__(self, upstream: str) -> None:
        self.mangle = False
        self.mangled = 0
        proxy = self
        http = httpx.Client(base_url=upstream, timeout=30)
        self._http = http

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                path = self.path.split("?", 1)[0]
                if proxy.mangle and self.command == "GET" and "/workflowExecutions/" in path \
                        and not path.endswith("/downloadUrls"):
                    proxy.mangled += 1
                    status, ctype, payload = 200, "application/json", proxy.BODY
                else:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                    upstream_reply = http.request(self.command, self.path, content=body, headers=headers)
                    status, payload = upstream_reply.status_code, upstream_reply.content
                    ctype = upstream_reply.headers.get("content-type", "application/json")
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "ShapeShiftingProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        self._http.close()


def test_unexpected_api_shape_is_recorded_against_the_execution(tmp_path):
    with rig([WORKFLOW], database_url=f"sqlite:///{tmp_path / 's.db'}") as r, \
            ShapeShiftingProxy(r.sim.url) as proxy:
        r.request(WF, KEY)
        r.monitor_pass()  # submitted directly
        assert r.status(WF, KEY) in ("PENDING", "RUNNING")

        def factory() -> AsyncAmcClient:
            return AsyncAmcClient(proxy.url, credentials(r.sim), retry=FAST_RETRY)

        proxy.mangle = True
        report = PassReport()
        for _ in range(2):
            r.store.update_attempt(r.store.get_live(WF, KEY).attempt.id,
                                   next_check_at=datetime.now(UTC) - timedelta(seconds=1))  # due now
            poll_due(r.store, factory, r.config, report=report)  # must not raise
        assert proxy.mangled >= 2 and report.errors >= 2
        attempt = r.store.get_live(WF, KEY).attempt
        assert attempt.status in ("PENDING", "RUNNING")  # not failed on the first odd answers
        assert attempt.error_type == "AMC_API" and attempt.error_count == 2
        assert attempt.last_error, attempt

        proxy.mangle = False
        r.drive(lambda: r.status(WF, KEY) == "SUCCESS")
        attempt = r.store.get_live(WF, KEY).attempt
        assert attempt.error_count == 0
        print(f"\nunexpected shape: recorded as {attempt.error_type or 'AMC_API'}; last error was "
              f"{report.errors} errors in the pass report; recovered to SUCCESS")
