"""Simulator state: executions, saved workflows, tokens, quotas, faults, stats and the clock (schedules in
schedule_book.py, result files in results.py, accounts in accounts.py, as mixins or parts of it).

Shared between the uvicorn thread (the HTTP app) and the caller's thread (SimulatorServer's Python
API), so every access goes through one re-entrant lock. Statuses are not stored: they are computed
from the creation time and a timeline fixed at create, against the simulator clock (real time plus
`advance_clock` offset), so an execution moves with no background task and survives a restart.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import secrets
import sqlite3
import string
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from amc_pipeline.simulator import results
from amc_pipeline.simulator.accounts import Accounts
from amc_pipeline.simulator.config import Fault, Scenario, SimulatorConfig
from amc_pipeline.simulator.results import ResultFiles
from amc_pipeline.simulator.schedule_book import ScheduleBook
from amc_pipeline.simulator.timefmt import iso_z

ACTIVE = ("PENDING", "RUNNING")
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED", "REJECTED")
UNKNOWN_STATUS = "QUEUED_FOR_PROCESSING"
DEFAULT_FAILURE_REASON = "Workflow execution failed due to an internal service error. Please retry."
DEFAULT_REJECTED_REASON = "Workflow execution rejected: insufficient resources available for this instance."
FAULT_ONLY_FOR = {"lost_create_response": "create", "truncate_download": "download", "expire_url": "download"}


def request_id() -> str:
    return "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(20))


class SimulatorState(ScheduleBook, ResultFiles):
    """Everything the simulator knows. Thread-safe; optionally persisted to SQLite."""

    def __init__(self, config: SimulatorConfig | None = None, db_path: str | Path | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.lock = threading.RLock()
        self.instances: dict[str, tuple[str, str]] = dict(self.config.instances)
        for extra in self.config.accounts:
            self.instances.update(extra.instances)
        self.accounts = Accounts(self.config)
        self.scenarios: dict[str, Scenario] = dict(self.config.scenarios)
        self.faults: list[dict[str, Any]] = []
        self.rng = random.Random(self.config.seed)
        self.stats_counter: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.clock_offset = 0.0
        self.executions: dict[str, dict[str, Any]] = {}
        self.workflows: dict[str, dict[str, dict[str, Any]]] = {}
        #: AMC schedules by instance and scheduleId: {"public": <Schedule>, "anchor", "last_run"} (sim epochs).
        self.schedules: dict[str, dict[str, dict[str, Any]]] = {}
        self.tokens: dict[str, tuple[str, float]] = {}
        #: Every access token and pre-signed URL signature ever handed out (kept through revocation and
        #: reset), so tests can prove none of them leaks into logs, stores or files.
        self.issued_tokens: list[str] = []
        self.issued_signatures: list[str] = []
        self.seq = 0
        self.signing_key = secrets.token_bytes(32)
        self._tmp = tempfile.TemporaryDirectory(prefix="amc-sim-results-")
        self.results_dir = Path(self._tmp.name)
        self._file_locks: dict[str, threading.Lock] = {}
        self._files: dict[str, list[Path]] = {}
        self.db: sqlite3.Connection | None = None
        for fault in self.config.faults:
            self.add_fault(fault)
        if db_path is not None:
            self._open_db(Path(db_path))

    # ---------------------------------------------------------------- persistence
    def _open_db(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS executions (id TEXT PRIMARY KEY, seq INTEGER, data TEXT)")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS workflows (instance TEXT, workflow_id TEXT, data TEXT, "
            "PRIMARY KEY (instance, workflow_id))"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS tokens (token TEXT PRIMARY KEY, client_id TEXT, expires REAL)")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS schedules (instance TEXT, schedule_id TEXT, data TEXT, "
            "PRIMARY KEY (instance, schedule_id))"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS instances (instance TEXT PRIMARY KEY, advertiser TEXT, marketplace TEXT)"
        )
        for _id, seq, data in self.db.execute("SELECT id, seq, data FROM executions ORDER BY seq"):
            self.executions[_id] = json.loads(data)
            self.seq = max(self.seq, seq)
        for instance, wid, data in self.db.execute("SELECT instance, workflow_id, data FROM workflows"):
            self.workflows.setdefault(instance, {})[wid] = json.loads(data)
        for instance, sid, data in self.db.execute("SELECT instance, schedule_id, data FROM schedules"):
            self.schedules.setdefault(instance, {})[sid] = json.loads(data)
        for token, client_id, expires in self.db.execute("SELECT token, client_id, expires FROM tokens"):
            self.tokens[token] = (client_id, expires)
        for instance, adv, mkt in self.db.execute("SELECT instance, advertiser, marketplace FROM instances"):
            self.instances[instance] = (adv, mkt)
        meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        if "clock_offset" in meta:
            self.clock_offset = float(meta["clock_offset"])
        if "signing_key" in meta:
            self.signing_key = bytes.fromhex(meta["signing_key"])
        else:
            self._meta("signing_key", self.signing_key.hex())

    def _meta(self, key: str, value: str) -> None:
        if self.db is not None:
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def _save_execution(self, record: dict[str, Any]) -> None:
        if self.db is not None:
            self.db.execute(
                "INSERT OR REPLACE INTO executions (id, seq, data) VALUES (?, ?, ?)",
                (record["id"], record["seq"], json.dumps(record)),
            )

    def _save_workflow(self, instance: str, workflow_id: str, data: dict[str, Any] | None) -> None:
        if self.db is None:
            return
        if data is None:
            self.db.execute("DELETE FROM workflows WHERE instance = ? AND workflow_id = ?", (instance, workflow_id))
        else:
            self.db.execute(
                "INSERT OR REPLACE INTO workflows (instance, workflow_id, data) VALUES (?, ?, ?)",
                (instance, workflow_id, json.dumps(data)),
            )

    def close(self) -> None:
        with self.lock:
            if self.db is not None:
                self.db.close()
                self.db = None
            self._tmp.cleanup()

    # ---------------------------------------------------------------- clock
    def now(self) -> float:
        return time.time() + self.clock_offset

    def advance_clock(self, seconds: float) -> None:
        with self.lock:
            self.clock_offset += float(seconds)
            self._meta("clock_offset", repr(self.clock_offset))

    # ---------------------------------------------------------------- instances, scenarios, faults, stats
    def register_instance(self, instance_id: str, advertiser_id: str, marketplace_id: str,
                          client_id: str | None = None) -> None:
        """Add an instance to an account (the primary one unless `client_id` names another)."""
        with self.lock:
            self.instances[instance_id] = (advertiser_id, marketplace_id)
            self.accounts.own(instance_id, client_id)
            if self.db is not None:
                self.db.execute(
                    "INSERT OR REPLACE INTO instances (instance, advertiser, marketplace) VALUES (?, ?, ?)",
                    (instance_id, advertiser_id, marketplace_id),
                )

    def set_scenario(self, workflow_key: str, scenario: Scenario) -> None:
        with self.lock:
            self.scenarios[workflow_key] = scenario

    def clear_scenarios(self) -> None:
        with self.lock:
            self.scenarios = dict(self.config.scenarios)

    def add_fault(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append({"fault": fault, "remaining": fault.times})

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def list_faults(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(f["fault"].to_dict(), remaining=f["remaining"]) for f in self.faults]

    def take_fault(self, endpoint: str) -> Fault | None:
        """The fault to apply to this request, if any (consumes one of its `times`)."""
        with self.lock:
            for entry in list(self.faults):
                fault: Fault = entry["fault"]
                if fault.endpoint not in ("*", endpoint):
                    continue
                only = FAULT_ONLY_FOR.get(fault.kind)
                if only is not None and only != endpoint:
                    continue
                if fault.probability is not None and self.rng.random() >= fault.probability:
                    continue
                if entry["remaining"] is not None:
                    entry["remaining"] -= 1
                    if entry["remaining"] <= 0:
                        self.faults.remove(entry)
                return fault
            return None

    def enter(self) -> None:
        """Track API requests in flight (max_in_flight shows whether clients really run concurrently)."""
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def count(self, endpoint: str) -> None:
        with self.lock:
            self.stats_counter[endpoint] += 1

    def stats(self) -> dict[str, int]:
        with self.lock:
            return dict(self.stats_counter)

    def reset(self) -> None:
        """Forget executions, workflows, tokens, faults, stats and the clock offset."""
        with self.lock:
            self.executions.clear()
            self.workflows.clear()
            self.schedules.clear()
            self.tokens.clear()
            self.faults.clear()
            self.stats_counter.clear()
            self.scenarios = dict(self.config.scenarios)
            self.clock_offset = 0.0
            self._files.clear()
            if self.db is not None:
                for table in ("executions", "workflows", "schedules", "tokens"):
                    self.db.execute(f"DELETE FROM {table}")
                self._meta("clock_offset", "0.0")

    # ---------------------------------------------------------------- tokens
    def issue_token(self, client_id: str) -> str:
        token = "Atza|" + secrets.token_urlsafe(48)
        with self.lock:
            expires = self.now() + float(self.config.token_ttl_seconds)
            self.tokens[token] = (client_id, expires)
            self.issued_tokens.append(token)
            if self.db is not None:
                self.db.execute(
                    "INSERT OR REPLACE INTO tokens (token, client_id, expires) VALUES (?, ?, ?)",
                    (token, client_id, expires),
                )
        return token

    def check_token(self, token: str) -> tuple[str | None, str]:
        """(client id, "") for a valid token, else (None, reason)."""
        with self.lock:
            entry = self.tokens.get(token)
            if entry is None:
                return None, "unknown"
            if self.now() >= entry[1]:
                return None, "expired"
            return entry[0], ""

    def revoke_account(self, client_id: str) -> None:
        """Revoke one account's refresh token and its access tokens; other accounts keep working."""
        with self.lock:
            self.accounts.revoke(client_id)
            for token in [t for t, (owner, _) in self.tokens.items() if owner == client_id]:
                del self.tokens[token]
                if self.db is not None:
                    self.db.execute("DELETE FROM tokens WHERE token = ?", (token,))

    def active_in_account(self, instance: str, now: float) -> tuple[int, int]:
        """(executions PENDING or RUNNING now across the instance's account, that account's limit)."""
        with self.lock:
            account = self.accounts.account_of(instance)
            if account is None:
                return 0, 0
            active = sum(1 for r in self.executions.values()
                         if r["instance"] in account.instances and self.status_of(r, now)[0] in ("PENDING", "RUNNING"))
            return active, account.max_active_executions

    def revoke_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()
            if self.db is not None:
                self.db.execute("DELETE FROM tokens")

    # ---------------------------------------------------------------- workflows
    def get_workflow(self, instance: str, workflow_id: str) -> dict[str, Any] | None:
        with self.lock:
            found = self.workflows.get(instance, {}).get(workflow_id)
            return copy.deepcopy(found) if found is not None else None

    def list_workflows(self, instance: str) -> list[dict[str, Any]]:
        with self.lock:
            return [copy.deepcopy(w) for w in self.workflows.get(instance, {}).values()]

    def put_workflow(self, instance: str, data: dict[str, Any]) -> None:
        with self.lock:
            self.workflows.setdefault(instance, {})[data["workflowId"]] = copy.deepcopy(data)
            self._save_workflow(instance, data["workflowId"], data)

    def delete_workflow(self, instance: str, workflow_id: str) -> bool:
        with self.lock:
            found = self.workflows.get(instance, {}).pop(workflow_id, None)
            self._save_workflow(instance, workflow_id, None)
            return found is not None

    # ---------------------------------------------------------------- executions
    def scenario_for(self, workflow_id: str) -> Scenario:
        with self.lock:
            return self.scenarios.get(workflow_key(workflow_id)) or Scenario()

    def quota_used(self, instance: str, now: float) -> int:
        day = datetime.fromtimestamp(now, UTC).date()
        with self.lock:
            return sum(
                1
                for r in self.executions.values()
                if r["instance"] == instance and datetime.fromtimestamp(r["created"], UTC).date() == day
                and r["public"].get("executionCategory", "AD_HOC") == "AD_HOC"
            )

    def timeline(self, scenario: Scenario) -> list[tuple[float, str]]:
        cfg = self.config
        p, r = float(cfg.pending_seconds), float(cfg.running_seconds)
        pub = float(cfg.publishing_seconds) if cfg.publishing_seconds > 0 else (r if scenario.publishing else 0.0)
        kind = scenario.kind
        if kind == "stuck_pending":
            return [(0.0, "PENDING")]
        if kind == "stuck_running":
            return [(0.0, "PENDING"), (p, "RUNNING")]
        if kind == "rejected":
            return [(0.0, "PENDING"), (p, "REJECTED")]
        if kind == "fail":
            return [(0.0, "PENDING"), (p, "RUNNING"), (p + r, "FAILED")]
        if kind == "cancelled":
            return [(0.0, "PENDING"), (p, "RUNNING"), (p + r, "CANCELLED")]
        steps = [(0.0, "PENDING")]
        t = p
        if kind == "unknown_status":
            steps.append((t, UNKNOWN_STATUS))
            t += float(scenario.unknown_status_seconds)
        steps.append((t, "RUNNING"))
        t += r
        if pub > 0:
            steps.append((t, "PUBLISHING"))
            t += pub
        steps.append((t, "SUCCEEDED"))
        return steps

    def create_execution(
        self, instance: str, fields: dict[str, Any], sql: str | None, *, at: float | None = None,
        category: str = "AD_HOC",
    ) -> dict[str, Any]:
        """Store a new PENDING execution (validation is the caller's job) and return its AMC view.

        `at` backdates the creation (a schedule's run that fell due between two requests);
        `category` is AMC's executionCategory (only AD_HOC counts against the daily quota).
        """
        with self.lock:
            now = self.now() if at is None else at
            scenario = self.scenario_for(fields["workflowId"])
            columns = self._columns_for(scenario)
            self.seq += 1
            execution_id = str(uuid.uuid4())
            public = dict(fields)
            public.update(
                {
                    "workflowExecutionId": execution_id,
                    "createTime": iso_z(now),
                    "expireTime": iso_z(now + 86400),
                    "waitUntil": iso_z(now - 3600),  # as recorded live: an hour before createTime
                    "executionCategory": category,
                    "dataGaps": [],
                }
            )
            record = {
                "id": execution_id,
                "instance": instance,
                "seq": self.seq,
                "created": now,
                "key": workflow_key(fields["workflowId"]),
                "sql": sql,
                "scenario": scenario.to_dict(),
                "timeline": self.timeline(scenario),
                "cancelled_at": None,
                "columns": columns,
                "public": public,
            }
            self.executions[execution_id] = record
            self._save_execution(record)
            account = self.accounts.account_of(instance)
            if account is not None:
                account.peak_active = max(account.peak_active, self.active_in_account(instance, now)[0])
            return self.view(record, now)

    def _columns_for(self, scenario: Scenario) -> list[dict[str, str]]:
        if scenario.columns:
            return results.normalize_columns(scenario.columns)
        if scenario.result_files:
            return results.columns_from_csv(Path(scenario.result_files[0]))
        return results.normalize_columns(None)

    def status_of(self, record: dict[str, Any], now: float) -> tuple[str, float]:
        """(status, time of the last change) at `now`."""
        cancelled_at = record.get("cancelled_at")
        if cancelled_at is not None and cancelled_at <= now:
            return "CANCELLED", cancelled_at
        status, changed = "PENDING", record["created"]
        for offset, step in record["timeline"]:
            if record["created"] + offset <= now:
                status, changed = step, record["created"] + offset
        return status, changed

    def view(self, record: dict[str, Any], now: float | None = None, include_workflow: bool = False) -> dict[str, Any]:
        """The execution as AMC shows it at `now`: keys sorted like the live service."""
        now = self.now() if now is None else now
        status, changed = self.status_of(record, now)
        out = copy.deepcopy(record["public"])
        out["status"] = status
        out["lastUpdatedTime"] = iso_z(changed)
        scenario = record["scenario"]
        if status == "SUCCEEDED":
            running_from = next((record["created"] + o for o, s in record["timeline"] if s == "RUNNING"), changed)
            out.update(
                {
                    "availableTimeBeforeWindowSecs": 0,
                    "executionTime": int(round(changed - running_from)),
                    "invalidationOffsetSecs": 266400,
                    "outputColumns": copy.deepcopy(record["columns"]),
                    "outputS3URI": f"s3://amc-sim-results/{record['instance']}/{record['id']}/",
                    "validatedTime": iso_z(record["created"] + min(2.0, float(self.config.pending_seconds)), True),
                }
            )
        elif status == "FAILED":
            reason = scenario.get("failure_reason") or DEFAULT_FAILURE_REASON
            out["failureReason"] = reason
            out["statusReason"] = reason
        elif status == "REJECTED":
            reason = scenario.get("failure_reason") or DEFAULT_REJECTED_REASON
            out["failureReason"] = reason
            out["statusReason"] = reason
        if include_workflow and record.get("sql"):
            out["workflow"] = {"workflowId": out["workflowId"], "sqlQuery": record["sql"]}
        return dict(sorted(out.items()))

    def get_record(self, execution_id: str) -> dict[str, Any] | None:
        with self.lock:
            return self.executions.get(execution_id)

    def list_records(self, instance: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            records = [r for r in self.executions.values() if instance is None or r["instance"] == instance]
        return sorted(records, key=lambda r: r["seq"])

    def cancel(self, record: dict[str, Any]) -> None:
        with self.lock:
            record["cancelled_at"] = self.now()
            self._save_execution(record)

    def update_public(self, record: dict[str, Any], changes: dict[str, Any]) -> None:
        with self.lock:
            record["public"].update(changes)
            self._save_execution(record)



def workflow_key(workflow_id: str) -> str:
    """Scenario key: the workflowId up to the first '-' (ad hoc ids are '<workflow name>-<token>')."""
    return workflow_id.split("-", 1)[0]


def encode_token(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(token: str) -> dict[str, Any]:
    padded = token + "=" * (-len(token) % 4)
    data = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
    if not isinstance(data, dict):
        raise ValueError("bad token")
    return data


def utc_day_end(now: float) -> float:
    day = datetime.fromtimestamp(now, UTC).date()
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() + 86400


__all__ = ["SimulatorState", "workflow_key", "iso_z", "request_id"]
