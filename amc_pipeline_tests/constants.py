"""Values the tests share: the AMC instance and the Login with Amazon credentials used against the
simulator, and the simulator's fast test lifecycle.

One module so a test, a fixture and a helper can never disagree on them. They equal the simulator's
defaults (`SimulatorConfig` in amc_pipeline/simulator/config.py) on purpose, but are written out here
rather than read from it: a changed default then fails tests instead of silently moving with them.
"""

from __future__ import annotations

from typing import Any

#: The instance the simulator knows by default, and its advertiser and marketplace.
INSTANCE_ID = "amcdemo001"
ADVERTISER_ID = "ENTITY1AA1AA11AAA1"
MARKETPLACE_ID = "ATVPDKIKX0DER"
#: The same as a config mapping (`instances:` entry, `InstanceConfig(**INSTANCE)`).
INSTANCE: dict[str, str] = {
    "instance_id": INSTANCE_ID,
    "advertiser_id": ADVERTISER_ID,
    "marketplace_id": MARKETPLACE_ID,
}

#: A second instance tests register themselves (isolation between instances).
OTHER_INSTANCE_ID = "amcother02"

#: The simulator's default LWA credentials (public, fake).
CLIENT_ID = "sim-client-id"
CLIENT_SECRET = "sim-client-secret"
REFRESH_TOKEN = "sim-refresh-token"
#: The same as keyword arguments (`AmcCredentials(**CREDENTIALS, token_url=...)`).
CREDENTIALS: dict[str, str] = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN}

#: Sub-second PENDING and RUNNING phases: an execution succeeds within half a second.
FAST_LIFECYCLE: dict[str, Any] = {"pending_seconds": 0.2, "running_seconds": 0.3}
