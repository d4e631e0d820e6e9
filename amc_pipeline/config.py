"""The project's configuration: one YAML file of AMC instances and workflows, plus environment.

Why pydantic and our own error text: a data engineer editing the YAML must learn from one line which
file, which field and what is wrong (`amc_pipeline.yaml: workflows[1].partitions: expected
daily|weekly|monthly, got 'hourly'`) before Dagster loads anything. Credentials never live here;
they come from environment variables (see `Settings`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from amc_pipeline.config_packing import PackingConfig
from amc_pipeline.config_schedule import AmcScheduleConfig
from amc_pipeline.config_values import one_of
from amc_pipeline.templating import check_template

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_FILE = "amc_pipeline.yaml"
DEFAULT_API_URL = "https://advertising-api.amazon.com"
DEFAULT_TOKEN_URL = "https://api.amazon.com/auth/o2/token"

#: Workflow names become asset keys, folder names and AMC workflow ids: nothing that escapes a folder.
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
#: AMC instance ids are short lowercase alphanumerics (e.g. amcabc123).
INSTANCE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{1,62}$")
#: Asset names the project itself uses under `amc/` (the health assets): a workflow of that name would
#: collide with them in the asset graph, so config validation refuses it up front.
RESERVED_NAMES: frozenset[str] = frozenset({"execution_metrics", "execution_overview"})
ENTITY_PATTERN = re.compile(r"^[A-Za-z0-9]{4,64}$")
TAG_PATTERN = re.compile(r"^[A-Za-z0-9_.\-/]{1,63}$")
#: An environment variable's name (what it holds may be a secret, which never lives in the YAML).
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

PartitionKind = Literal["daily", "weekly", "monthly"]


class ConfigError(ValueError):
    """A configuration problem, phrased as `<file>: <field path>: <problem>`."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: The account every instance belongs to when the YAML has no `accounts:` block (today's one set of
#: credentials in AMC_CLIENT_ID / AMC_CLIENT_SECRET / AMC_REFRESH_TOKEN).
DEFAULT_ACCOUNT = "default"
#: At most 48 characters: the account's heartbeat row is named `account:<name>` (64 at most).
ACCOUNT_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,47}$")
#: A fanned-out partition key is `<YYYY-MM-DD>|<instance id>` in the store's 64-character column.
MAX_FAN_OUT_INSTANCE_ID = 64 - len("2026-01-01|")


class AccountConfig(_Model):
    """One Login-with-Amazon credential set (an Amazon Ads account), read from the environment variables
    it names, never from the YAML; and the account's own limit on executions in parallel (AMC: 200
    through the API, across all of the account's instances)."""

    name: str
    client_id_env: str = "AMC_CLIENT_ID"
    client_secret_env: str = "AMC_CLIENT_SECRET"
    refresh_token_env: str = "AMC_REFRESH_TOKEN"
    max_active_executions: int = Field(default=200, ge=1, le=100_000)

    @field_validator("name")
    @classmethod
    def _account_name(cls, value: str) -> str:
        if not ACCOUNT_PATTERN.match(value):
            raise ValueError(f"expected [a-z][a-z0-9_-]* (at most 48 characters), got {value!r}")
        return value

    @field_validator("client_id_env", "client_secret_env", "refresh_token_env", mode="before")
    @classmethod
    def _env_name(cls, value: Any) -> Any:
        # Never quote a bad value: it may be the secret itself, pasted in by mistake.
        if not isinstance(value, str) or not ENV_NAME_PATTERN.match(value):
            raise ValueError("expected the name of an environment variable (e.g. AMC_CLIENT_SECRET_AGENCY_A); "
                             "credentials themselves never live in the YAML")
        return value

    @property
    def env_names(self) -> tuple[str, str, str]:
        return (self.client_id_env, self.client_secret_env, self.refresh_token_env)


class InstanceConfig(_Model):
    instance_id: str
    advertiser_id: str
    marketplace_id: str
    #: The account whose credentials reach this instance (see `accounts:`).
    account: str = DEFAULT_ACCOUNT
    #: Free-form labels a fanned-out workflow can select instances by (`instances: {tags: {...}}`).
    tags: dict[str, str] = Field(default_factory=dict)
    max_active_executions: int = Field(default=10, ge=1, le=1000)
    daily_execution_quota: int = Field(default=30, ge=1, le=100_000)

    @field_validator("tags")
    @classmethod
    def _instance_tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key, tag_value in value.items():
            if not TAG_PATTERN.match(key) or not TAG_PATTERN.match(str(tag_value)):
                raise ValueError(f"tag {key!r}: {tag_value!r} must be letters, digits, '_', '.', '-', '/'")
        return value

    @field_validator("instance_id")
    @classmethod
    def _instance_id(cls, value: str) -> str:
        if not INSTANCE_PATTERN.match(value):
            raise ValueError(f"expected lowercase letters, digits, '_' or '-', got {value!r}")
        return value

    @field_validator("advertiser_id", "marketplace_id")
    @classmethod
    def _entity(cls, value: str) -> str:
        if not ENTITY_PATTERN.match(value):
            raise ValueError(f"expected letters and digits only, got {value!r}")
        return value


class WorkflowConfig(_Model):
    name: str
    #: The one instance this workflow runs on; or `instances`, to run it on several (fan-out).
    instance_id: str | None = None
    #: Fan-out: the instances this workflow runs on, resolved from a list of ids, `all`, or
    #: `{tags: {key: value}}` when the file is loaded (PipelineConfig._resolve_instances).
    instances: tuple[str, ...] | None = None
    sql: str | None = None
    workflow_id: str | None = None
    partitions: PartitionKind = "daily"
    start_date: date
    end_date: date | None = None
    data_lag_days: int = Field(default=3, ge=0, le=365)
    timezone: str = "UTC"
    max_runtime_minutes: int = Field(default=360, ge=15, le=1440)
    stuck_pending_minutes: int = Field(default=60, ge=1)
    stuck_running_minutes: int = Field(default=120, ge=1)
    #: How long past a window's cadence a landing may be late before the asset is marked stale
    #: (FreshnessPolicy): AMC runs take up to hours and the newest window waits `data_lag_days`.
    freshness_grace_hours: float = Field(default=12.0, gt=0, le=24 * 31)
    description: str | None = None
    owners: tuple[str, ...] = ()
    tags: dict[str, str] = Field(default_factory=dict)
    parameter_values: dict[str, str] = Field(default_factory=dict)
    ignore_data_gaps: bool = False
    # Saved workflows, AMC schedules and executions started elsewhere (docs/amc-modes.md).
    sql_file: str | None = None  # read relative to the YAML file into `sql`
    saved_workflow: bool = False  # keep `sql` as the saved AMC workflow `workflow_id` (default: name)
    amc_schedule: AmcScheduleConfig | None = None
    adopt_external: bool = False

    @model_validator(mode="before")
    @classmethod
    def _saved_inputs(cls, data: Any, info: ValidationInfo) -> Any:
        """Read `sql_file` (relative to the YAML) into `sql`; a saved workflow's id defaults to its name."""
        if not isinstance(data, dict):
            return data
        if data.get("sql_file") is not None:
            if data.get("sql"):
                raise ValueError("sql_file: give sql or sql_file, not both")
            base = Path((info.context or {}).get("base_dir") or Path.cwd())
            path = base / str(data["sql_file"])
            try:
                data = {**data, "sql": path.read_text(encoding="utf-8")}
            except OSError as exc:
                raise ValueError(f"sql_file: cannot read {path} ({exc.strerror})") from None
        if data.get("saved_workflow") is True and not data.get("workflow_id") and isinstance(data.get("name"), str):
            data = {**data, "workflow_id": data["name"]}
        return data

    #: Opt-in: contiguous queued windows in one AMC execution, split back at landing (docs/packing.md).
    packing: PackingConfig | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(
                f"expected [a-z][a-z0-9_]* (at most 63 characters; no paths, dashes or SQL), got {value!r}"
            )
        if value in RESERVED_NAMES:
            raise ValueError(f"{value!r} is reserved for the asset amc/{value}; choose another name")
        return value

    @field_validator("workflow_id")
    @classmethod
    def _workflow_id(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$", value):
            raise ValueError(f"expected letters, digits, '_', '.', '-', got {value!r}")
        return value

    @field_validator("partitions", mode="before")
    @classmethod
    def _partitions(cls, value: Any) -> Any:
        return one_of(value, ("daily", "weekly", "monthly"))

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"expected an IANA time zone such as UTC or America/New_York, got {value!r}") from None
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key, tag_value in value.items():
            if not TAG_PATTERN.match(key) or not TAG_PATTERN.match(str(tag_value)):
                raise ValueError(f"tag {key!r}: {tag_value!r} must be letters, digits, '_', '.', '-', '/'")
        return value

    @model_validator(mode="after")
    def _source(self) -> WorkflowConfig:
        if (self.instance_id is None) == (self.instances is None):
            raise ValueError("give exactly one of instance_id (one instance) or instances (a list, all, "
                             "or {tags: {...}}: the workflow runs on each of them)")
        if self.instances is not None:
            if not self.instances:
                raise ValueError("instances: the list is empty (no instance matched)")
            if len(set(self.instances)) != len(self.instances):
                twice = sorted({i for i in self.instances if self.instances.count(i) > 1})
                raise ValueError(f"instances: listed twice: {twice}")
        if bool(self.sql) == bool(self.workflow_id) and not (self.saved_workflow and self.sql):
            raise ValueError("give exactly one of sql (ad hoc) or workflow_id (a saved AMC workflow); "
                             "with saved_workflow: true, sql is kept as the saved workflow workflow_id")
        if self.saved_workflow and not self.sql:
            raise ValueError("saved_workflow: needs sql or sql_file (the SQL kept as the saved workflow)")
        if self.amc_schedule is not None and not self.saved_workflow:
            raise ValueError("amc_schedule: needs saved_workflow: true (AMC schedules run saved workflows)")
        if self.amc_schedule is not None and self.amc_schedule.period != self.partitions:
            raise ValueError(f"amc_schedule.period: {self.amc_schedule.period} runs cover no {self.partitions} "
                             f"partition; use the same cadence as partitions")
        if self.adopt_external and not self.workflow_id:
            raise ValueError("adopt_external: needs a saved workflow (saved_workflow: true or workflow_id): "
                             "executions are found by their workflowId")
        for key, value in self.parameter_values.items():
            try:
                check_template(value)
            except ValueError as exc:
                raise ValueError(f"parameter_values.{key}: {exc}") from None
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        return self

    @property
    def is_ad_hoc(self) -> bool:
        """Run as ad hoc SQL (a new workflowId per attempt); a saved workflow runs by its workflowId."""
        return self.sql is not None and not self.saved_workflow

    @property
    def adopts(self) -> bool:
        """The monitor lists this workflow's executions at AMC and adopts those it did not create."""
        return self.amc_schedule is not None or self.adopt_external

    @property
    def fan_out(self) -> bool:
        """True when the workflow runs on `instances` (its partitions are window x instance)."""
        return self.instances is not None

    @property
    def instance_ids(self) -> tuple[str, ...]:
        """Every instance this workflow runs on, in configured order."""
        if self.instances is not None:
            return self.instances
        assert self.instance_id is not None
        return (self.instance_id,)


class MonitorConfig(_Model):
    """How the monitor polls and retries. Defaults suit real AMC (runs take 15 minutes or more);
    the demo and tests shorten them."""

    sensor_interval_seconds: int = Field(default=15, ge=1, le=3600)
    # Status checks (monitor/transitions.RunTimePlan): each active execution's next check, and an
    # instance's pass (which checks all its active executions) when the earliest of them is due.
    poll_initial_seconds: float = Field(default=30.0, gt=0)  # first check after submit; early gap
    poll_early_seconds: float = Field(default=90.0, ge=0)  # AMC rejects bad SQL/permissions quickly
    poll_pending_seconds: float = Field(default=60.0, gt=0)  # gap while PENDING at AMC
    poll_watch_seconds: float = Field(default=45.0, gt=0)  # gap while a run may finish: detection latency
    poll_max_seconds: float = Field(default=300.0, gt=0)  # the largest gap between an instance's passes
    poll_history_runs: int = Field(default=20, ge=1)  # recent SUCCESS runs per workflow the plan reads
    poll_history_min_runs: int = Field(default=3, ge=1)  # fewer: pooled runs of the instance, else backoff
    poll_watch_quantile: float = Field(default=0.1, ge=0, le=1)  # watch from lead x this quantile
    poll_watch_lead: float = Field(default=0.75, gt=0, le=1)  # of the workflow's past run times
    poll_tail_factor: float = Field(default=2.0, ge=1)  # past factor x longest known run: back off
    poll_backoff_fraction: float = Field(default=0.5, gt=0, le=1)  # nothing known: gap = this x run time
    concurrency: int = Field(default=10, ge=1, le=100)
    list_threshold: int = Field(default=2, ge=1)  # this many active on an instance: list pages, not GETs
    max_consecutive_errors: int = Field(default=5, ge=1)
    retry_base_seconds: float = Field(default=60.0, ge=0)
    retry_max_seconds: float = Field(default=300.0, ge=0)
    max_retries: int = Field(default=3, ge=0, le=20)
    ambiguous_grace_seconds: float = Field(default=30.0, ge=0)
    landing_retry_seconds: float = Field(default=60.0, ge=0)
    max_landing_attempts: int = Field(default=5, ge=1)
    landing_lease_seconds: float = Field(default=1800.0, gt=0)
    #: Landing runs the landing sensor keeps in flight per AMC instance, and in all.
    max_landings_per_instance: int = Field(default=2, ge=1, le=100)
    max_concurrent_landings: int = Field(default=6, ge=1, le=1000)
    check_interval_seconds: int = Field(default=300, ge=10)
    #: With amc_schedule / adopt_external workflows: how often a monitor run lists their executions.
    adopt_interval_seconds: int = Field(default=300, ge=1, le=86400)
    metrics_cron: str = "0 * * * *"

    @model_validator(mode="after")
    def _bounds(self) -> MonitorConfig:
        if self.poll_max_seconds < self.poll_initial_seconds:
            raise ValueError("poll_max_seconds must be at least poll_initial_seconds")
        return self


#: Where results may land: a local path (no scheme), file://, S3, Google Cloud Storage, Azure (ADLS Gen2).
RESULTS_URI_SCHEMES: tuple[str, ...] = ("file", "s3", "gs", "gcs", "abfs", "abfss", "az")
RESULTS_URI_ENV = "AMC_PIPELINE_RESULTS_URI"
#: Property names in the YAML that would hold a credential (they must come from the environment).
_SECRET_KEY_PATTERN = re.compile(r"(?i)(secret|password|passwd|token|credential|access[-_.]?key|account[-_.]?key|sas)")


def check_results_uri(value: str) -> str:
    """A results location without credentials: a local path or `<scheme>://<bucket or container>/<prefix>`.

    Pure text checks (no I/O, no pyarrow): config validation runs before anything loads. Credentials in
    the URI (`s3://KEY:SECRET@bucket`) are refused without quoting them: they belong in the
    environment (AWS_*, GOOGLE_*, AZURE_*), never in the YAML, the store or metadata.
    """
    text = value.strip()
    if not text:
        raise ValueError("expected a path or a URI such as s3://bucket/prefix, got an empty string")
    if "://" not in text:
        if ":" in text.split("/", 1)[0] and len(text.split("/", 1)[0]) > 2:  # `s3:bucket`, not `C:`
            raise ValueError(f"expected <scheme>://..., got {text.split(':', 1)[0]!r}: without '//'")
        return text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in RESULTS_URI_SCHEMES:
        raise ValueError(f"unsupported scheme {scheme!r}: expected a local path or one of "
                         f"{', '.join(s + '://' for s in RESULTS_URI_SCHEMES)}")
    # Azure names `container@account` in the netloc; anywhere else user info is an access key.
    if parts.password or ("@" in parts.netloc and scheme not in ("abfs", "abfss", "az")):
        raise ValueError("credentials are not allowed in the URI; give them in the environment "
                         "(e.g. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)")
    if parts.query and _SECRET_KEY_PATTERN.search(parts.query):
        raise ValueError("credentials are not allowed in the URI's query; give them in the environment")
    if scheme != "file" and not parts.netloc:
        raise ValueError(f"expected {scheme}://<bucket>/<prefix>, the bucket is missing")
    return text


class IcebergCatalogConfig(_Model):
    """The Iceberg catalog (pyiceberg's catalog types). Credentials come from the environment."""

    type: Literal["sql", "rest", "glue"] = "sql"
    uri: str | None = None
    properties: dict[str, str] = Field(default_factory=dict)

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, value: Any) -> Any:
        return one_of(value, ("sql", "rest", "glue"))

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).password:
            raise ValueError("a password is not allowed in the catalog URI; give it in the environment")
        return value

    @field_validator("properties")
    @classmethod
    def _properties(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if _SECRET_KEY_PATTERN.search(key):
                raise ValueError(f"{key!r} looks like a credential; credentials never live in the YAML "
                                 f"(give it in the environment)")
        return value


class IcebergConfig(_Model):
    namespace: str = "amc"
    catalog: IcebergCatalogConfig = Field(default_factory=IcebergCatalogConfig)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(f"expected [a-z][a-z0-9_]*, got {value!r}")
        return value


class StorageConfig(_Model):
    """Where results land: `results_uri` (default `<data dir>/results`; `$AMC_PIPELINE_RESULTS_URI` wins)
    and in which table format."""

    results_uri: str | None = None
    table_format: Literal["parquet", "iceberg"] = "parquet"
    iceberg: IcebergConfig = Field(default_factory=IcebergConfig)

    @field_validator("results_uri")
    @classmethod
    def _results_uri(cls, value: str | None) -> str | None:
        return None if value is None else check_results_uri(value)

    @field_validator("table_format", mode="before")
    @classmethod
    def _table_format(cls, value: Any) -> Any:
        return one_of(value, ("parquet", "iceberg"))


#: What a notification target may ask for (see amc_pipeline/notify/events.py for when each is sent).
NOTIFICATION_EVENTS: tuple[str, ...] = ("failed", "stuck", "landing_failed", "recovered", "unhealthy")
NotificationEvent = Literal["failed", "stuck", "landing_failed", "recovered", "unhealthy"]
TARGET_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


class NotificationTargetConfig(_Model):
    """One place messages go: a Slack incoming webhook or a JSON POST endpoint, its URL read from
    the environment variable `url_env` at send time (never from the YAML)."""

    name: str
    kind: Literal["slack", "webhook"]
    url_env: str
    events: tuple[NotificationEvent, ...] = NOTIFICATION_EVENTS  # type: ignore[assignment]
    workflows: tuple[str, ...] | None = None  # None: every workflow
    timeout_seconds: float = Field(default=3.0, gt=0, le=10)

    @field_validator("name")
    @classmethod
    def _target_name(cls, value: str) -> str:
        if not TARGET_NAME_PATTERN.match(value):
            raise ValueError(f"expected [a-z][a-z0-9_-]* (at most 63 characters), got {value!r}")
        return value

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, value: Any) -> Any:
        return one_of(value, ("slack", "webhook"))

    @field_validator("url_env", mode="before")
    @classmethod
    def _url_env(cls, value: Any) -> Any:
        # Never quote a bad value: it may be the secret URL pasted in by mistake.
        if not isinstance(value, str) or not ENV_NAME_PATTERN.match(value):
            raise ValueError("expected the name of an environment variable that holds the URL (e.g. "
                             "AMC_SLACK_WEBHOOK_URL); the URL itself is a secret and never lives in the YAML")
        return value

    @field_validator("events", mode="before")
    @classmethod
    def _events(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not value:
            raise ValueError(f"expected a list of {'|'.join(NOTIFICATION_EVENTS)}")
        for event in value:
            if event not in NOTIFICATION_EVENTS:
                raise ValueError(f"expected {'|'.join(NOTIFICATION_EVENTS)}, got {event!r}")
        return tuple(dict.fromkeys(value))


class NotificationsConfig(_Model):
    """Where failed, stuck, landing-failed, recovered windows and an unhealthy monitor are reported."""

    dagster_ui_url: str = "http://127.0.0.1:3000"
    targets: tuple[NotificationTargetConfig, ...] = ()
    retry_base_seconds: float = Field(default=30.0, ge=0)
    retry_max_seconds: float = Field(default=900.0, ge=0)
    tick_budget_seconds: float = Field(default=10.0, gt=0, le=50)

    @field_validator("dagster_ui_url")
    @classmethod
    def _ui_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"expected http(s)://host[:port][/path], got {value!r}")
        if "@" in parts.netloc:
            raise ValueError("credentials are not allowed in the URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _unique_targets(self) -> NotificationsConfig:
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError(f"target names must be unique, got {names}")
        return self


def _implicit_accounts() -> tuple[AccountConfig, ...]:
    return (AccountConfig(name=DEFAULT_ACCOUNT),)


class PipelineConfig(_Model):
    accounts: tuple[AccountConfig, ...] = Field(default_factory=_implicit_accounts)
    instances: tuple[InstanceConfig, ...]
    workflows: tuple[WorkflowConfig, ...]
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)

    notifications: NotificationsConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _resolve_instances(cls, data: Any) -> Any:
        """Expand each workflow's `instances: all | {tags: {...}} | [ids]` into a list of ids, and give
        instances without `account` the only account when exactly one is configured.

        Why before validation: the selection depends on the instances block, and the rest of the
        code then sees one form (a tuple of ids). A selector matching nothing is an error, not an
        empty workflow.
        """
        if not isinstance(data, dict):
            return data
        data = dict(data)
        raw_instances = data.get("instances")
        accounts = data.get("accounts")
        if isinstance(raw_instances, list) and isinstance(accounts, list) and len(accounts) == 1 \
                and isinstance(accounts[0], dict) and "name" in accounts[0]:
            only = accounts[0]["name"]
            raw_instances = [({**i, "account": only} if isinstance(i, dict) and "account" not in i else i)
                             for i in raw_instances]
            data["instances"] = raw_instances
        workflows = data.get("workflows")
        if not isinstance(workflows, list) or not isinstance(raw_instances, list):
            return data
        known = [i for i in raw_instances if isinstance(i, dict) and isinstance(i.get("instance_id"), str)]
        resolved = []
        for index, workflow in enumerate(workflows):
            if isinstance(workflow, dict) and "instances" in workflow:
                workflow = {**workflow, "instances": _select_instances(workflow["instances"], known, index)}
            resolved.append(workflow)
        data["workflows"] = resolved
        return data

    @model_validator(mode="after")
    def _accounts(self) -> PipelineConfig:
        names = [a.name for a in self.accounts]
        if len(set(names)) != len(names):
            raise ValueError(f"account names must be unique, got {names}")
        for index, instance in enumerate(self.instances):
            if instance.account not in names:
                raise ValueError(f"instances[{index}].account: unknown account {instance.account!r} "
                                 f"(configured: {', '.join(names)})")
        return self

    @model_validator(mode="after")
    def _notification_workflows(self) -> PipelineConfig:
        names = {w.name for w in self.workflows}
        for index, target in enumerate(self.notifications.targets if self.notifications else ()):
            for position, name in enumerate(target.workflows or ()):
                if name not in names:
                    raise ValueError(f"notifications.targets[{index}].workflows[{position}]: unknown workflow "
                                     f"{name!r} (configured: {', '.join(sorted(names)) or 'none'})")
        return self

    @model_validator(mode="after")
    def _references(self) -> PipelineConfig:
        ids = [i.instance_id for i in self.instances]
        if len(set(ids)) != len(ids):
            raise ValueError(f"instance ids must be unique, got {ids}")
        names = [w.name for w in self.workflows]
        if len(set(names)) != len(names):
            raise ValueError(f"workflow names must be unique, got {names}")
        for index, workflow in enumerate(self.workflows):
            field_name = "instances" if workflow.fan_out else "instance_id"
            for instance_id in workflow.instance_ids:
                if instance_id not in ids:
                    raise ValueError(
                        f"workflows[{index}].{field_name}: unknown instance {instance_id!r}"
                        f" (configured: {', '.join(ids) or 'none'})"
                    )
                if workflow.fan_out and len(instance_id) > MAX_FAN_OUT_INSTANCE_ID:
                    raise ValueError(
                        f"workflows[{index}].instances: instance id {instance_id!r} is longer than "
                        f"{MAX_FAN_OUT_INSTANCE_ID} characters; a fanned-out partition key "
                        f"<window>|<instance> must fit the store's 64")
            if workflow.fan_out and self.storage.table_format == "iceberg":
                raise ValueError(f"workflows[{index}].instances: a workflow fanned out over instances lands "
                                 f"as hive-partitioned Parquet (instance_id=/window_start=); "
                                 f"storage.table_format: iceberg supports one instance per workflow")
        return self

    def account(self, name: str) -> AccountConfig:
        for account in self.accounts:
            if account.name == name:
                return account
        raise KeyError(name)

    def account_of(self, instance_id: str) -> AccountConfig:
        return self.account(self.instance(instance_id).account)

    def instances_of(self, account: str) -> tuple[InstanceConfig, ...]:
        return tuple(i for i in self.instances if i.account == account)

    def instance(self, instance_id: str) -> InstanceConfig:
        for instance in self.instances:
            if instance.instance_id == instance_id:
                return instance
        raise KeyError(instance_id)

    def workflow(self, name: str) -> WorkflowConfig:
        for workflow in self.workflows:
            if workflow.name == name:
                return workflow
        raise KeyError(name)


def _select_instances(selector: Any, known: list[dict[str, Any]], index: int) -> Any:
    """A workflow's `instances:` as a list of ids: `all`, `{tags: {k: v}}` (every tag must match), or ids."""
    where = f"workflows[{index}].instances"
    if selector == "all":
        return [i["instance_id"] for i in known]
    if isinstance(selector, dict):
        if set(selector) != {"tags"} or not isinstance(selector["tags"], dict) or not selector["tags"]:
            raise ValueError(f"{where}: expected a list of instance ids, 'all', or {{tags: {{key: value}}}}")
        wanted = {str(k): str(v) for k, v in selector["tags"].items()}
        chosen = [i["instance_id"] for i in known
                  if isinstance(i.get("tags"), dict)
                  and all(str(i["tags"].get(k)) == v for k, v in wanted.items())]
        if not chosen:
            raise ValueError(f"{where}: no instance has tags {wanted}")
        return chosen
    if isinstance(selector, str):
        raise ValueError(f"{where}: expected a list of instance ids, 'all', or {{tags: {{key: value}}}}, "
                         f"got {selector!r}")
    return selector


def _field_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path


def _format_error(source: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        path = _field_path(tuple(p for p in err["loc"] if p not in ("function-after", "function-before")))
        message = err["msg"]
        for prefix in ("Value error, ", "Assertion failed, "):
            message = message.removeprefix(prefix)
        if err["type"] == "missing":
            message = "required field is missing"
        elif err["type"] == "extra_forbidden":
            message = "unknown field"
        lines.append(f"{source}: {path}: {message}" if path else f"{source}: {message}")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "<config>", base_dir: Path | None = None) -> PipelineConfig:
    """Validate an already-parsed YAML document (`sql_file` paths are relative to `base_dir`)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with 'instances' and 'workflows'")
    try:
        return PipelineConfig.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(_format_error(source, exc)) from None


def load_config(path: str | os.PathLike[str] | None = None) -> PipelineConfig:
    """Load and validate the YAML file at `path`, `$AMC_PIPELINE_CONFIG`, or the project default."""
    config_path = Path(path) if path else config_path_from_env()
    source = config_path.name
    try:
        text = config_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{config_path}: cannot read the configuration file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}: not valid YAML{where}") from None
    return parse_config(data, source, base_dir=config_path.resolve().parent)


def config_path_from_env() -> Path:
    value = os.environ.get("AMC_PIPELINE_CONFIG")
    return Path(value) if value else PROJECT_ROOT / DEFAULT_CONFIG_FILE


@dataclass(frozen=True)
class Settings:
    """Environment-derived settings. Credentials are read by the AMC resource via EnvVar, not here."""

    api_url: str
    token_url: str
    data_dir: Path
    database_url: str
    #: `$AMC_PIPELINE_RESULTS_URI` (validated), overriding the YAML's storage.results_uri; None when unset.
    results_uri: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = Path(os.environ.get("AMC_PIPELINE_DATA_DIR") or PROJECT_ROOT / "data").resolve()
        database_url = os.environ.get("AMC_PIPELINE_DATABASE_URL") or f"sqlite:///{data_dir / 'amc_pipeline.db'}"
        return cls(
            api_url=os.environ.get("AMC_API_URL") or DEFAULT_API_URL,
            token_url=os.environ.get("AMC_TOKEN_URL") or DEFAULT_TOKEN_URL,
            data_dir=data_dir,
            database_url=database_url,
            results_uri=results_uri_from_env(),
        )


def results_uri_from_env() -> str | None:
    """`$AMC_PIPELINE_RESULTS_URI`, checked like the YAML field; a bad value names the variable."""
    value = os.environ.get(RESULTS_URI_ENV)
    if not value:
        return None
    try:
        return check_results_uri(value)
    except ValueError as exc:
        raise ConfigError(f"{RESULTS_URI_ENV}: {exc}") from None
