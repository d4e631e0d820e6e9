"""Notifications: failed, stuck, landing-failed and recovered windows, and an unhealthy monitor, sent to
Slack incoming webhooks or JSON endpoints exactly once per event per target (no Dagster imports).

`events` derives what happened from the store (through `health/status`), `messages` renders it,
`delivery` POSTs it (short timeouts, a quick retry, errors scrubbed of the URL), and `service` runs
one pass: record new events per target, record recoveries, deliver what is due within a time budget.
The Dagster shell is `defs/notifications.py` (a sensor that runs one pass per tick, launching no run).
"""
