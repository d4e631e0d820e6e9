"""What a message says: one headline and the facts (workflow, window, status, AMC's reason, error type,
attempts, AMC execution id) plus a link to the asset partition in the Dagster UI.

Slack gets `text` (the notification preview) and `blocks`; a webhook gets the facts as JSON fields.
"""

from typing import Any
from urllib.parse import quote

from amc_pipeline.partition_keys import split_key

EMOJI = {"failed": "❌", "landing_failed": "❌", "stuck": "⚠️", "recovered": "✅", "unhealthy": "🚨"}
#: The health check's asset, linked from monitor-wide messages.
HEALTH_ASSET = "execution_metrics"


def partition_link(ui_url: str, workflow: str | None, partition_key: str | None) -> str:
    """`{ui}/assets/amc/<workflow>?partition=<key>` (the monitor's health asset for monitor-wide events)."""
    if workflow is None:
        return f"{ui_url}/assets/amc/{HEALTH_ASSET}"
    link = f"{ui_url}/assets/amc/{quote(workflow, safe='')}"
    return f"{link}?partition={quote(partition_key, safe='')}" if partition_key else link


def headline(data: dict[str, Any]) -> str:
    kind = data.get("kind", "")
    if data.get("workflow") is None:
        what = "AMC pipeline healthy again" if kind == "recovered" else "AMC pipeline unhealthy"
        return f"{EMOJI.get(kind, '')} {what}: {data.get('detail', '')}".strip()
    window, instance = split_key(str(data.get("partition_key", "?")))
    where = f"amc/{data['workflow']} window {window}" + (f" on instance {instance}" if instance else "")
    if kind == "failed":
        return f"{EMOJI[kind]} {where} {data.get('status', 'FAILED')}"
    if kind == "landing_failed":
        return f"{EMOJI[kind]} {where} could not be landed"
    if kind == "stuck":
        return f"{EMOJI[kind]} {where} stuck: {data.get('detail', data.get('status', ''))}"
    if kind == "recovered":
        return f"{EMOJI[kind]} {where} recovered: {data.get('detail', data.get('status', ''))}"
    return f"{where} {kind}"


def facts(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) lines under the headline, only for what is known."""
    rows = [("Status", data.get("status")),
            ("AMC's reason", ": ".join(str(x) for x in (data.get("error_type"), data.get("reason")) if x) or None),
            ("Detail", data.get("detail") if data.get("kind") == "landing_failed" else None),
            ("Attempts", data.get("attempts")),
            ("AMC execution", data.get("amc_execution_id")),
            ("Window", f"{data['window_start']} – {data['window_end']}" if data.get("window_start") else None)]
    return [(label, str(value)) for label, value in rows if value not in (None, "")]


def text(data: dict[str, Any], ui_url: str) -> str:
    lines = [headline(data), *(f"{label}: {value}" for label, value in facts(data))]
    lines.append(f"Open in Dagster: {partition_link(ui_url, data.get('workflow'), data.get('partition_key'))}")
    return "\n".join(lines)


def _mrkdwn(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(data: dict[str, Any], ui_url: str) -> dict[str, Any]:
    link = partition_link(ui_url, data.get("workflow"), data.get("partition_key"))
    details = "\n".join(f"*{label}:* {_mrkdwn(value)[:1500]}" for label, value in facts(data))
    title = {"type": "mrkdwn", "text": f"*{_mrkdwn(headline(data))}*"}
    blocks: list[dict[str, Any]] = [{"type": "section", "text": title}]
    if details:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": details}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{link}|Open in Dagster>"}]})
    return {"text": text(data, ui_url)[:3000], "blocks": blocks}


def webhook_body(data: dict[str, Any], ui_url: str) -> dict[str, Any]:
    return {
        "event": data.get("kind"),
        "event_key": data.get("event_key"),
        "workflow": data.get("workflow"),
        "window": data.get("partition_key"),
        "window_start": data.get("window_start"),
        "window_end": data.get("window_end"),
        "status": data.get("status"),
        "reason": data.get("reason"),
        "error_type": data.get("error_type"),
        "attempts": data.get("attempts"),
        "amc_execution_id": data.get("amc_execution_id"),
        "detail": data.get("detail"),
        "first_seen": data.get("first_seen"),
        "link": partition_link(ui_url, data.get("workflow"), data.get("partition_key")),
        "text": headline(data),
    }


def body_for(kind: str, data: dict[str, Any], ui_url: str) -> dict[str, Any]:
    return slack_body(data, ui_url) if kind == "slack" else webhook_body(data, ui_url)
