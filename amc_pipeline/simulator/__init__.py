"""AMC simulator: a local, faithful stand-in for the Amazon Marketing Cloud reporting API.

Follows shared/amc-api.md (Amazon's documented API): Login with Amazon tokens (`POST /auth/o2/token`), the reporting
endpoints under `/amc/reporting/{instanceId}` (workflowExecutions create/list/get/cancel/downloadUrls,
workflows CRUD) with AMC's header checks, error bodies and quotas, and pre-signed result URLs served
from the simulator's own host under `/_s3/...`. Statuses move on the simulator clock (real time plus
`advance_clock`), scripted per workflow key (the workflowId up to the first "-") by `Scenario`s;
`Fault`s inject throttling, 5xx, gateway timeouts, delays, dropped connections, lost create
responses, truncated downloads, expired URLs and revoked tokens.

Python API::

    with SimulatorServer(SimulatorConfig(pending_seconds=0.2, running_seconds=0.3)) as sim:
        sim.url, sim.token_url
        sim.set_scenario("daily_reach", Scenario(kind="fail"))
        sim.add_fault(Fault(kind="throttle", endpoint="create", times=2))

Admin HTTP API (no auth; JSON in and out), mirroring the Python API:

- `GET  /_simulator/health`                       → {"ok": true, "now": ...}
- `GET  /_simulator/scenarios`                    → {workflow_key: scenario}
- `POST /_simulator/scenarios`  {"workflow_key": "x", "scenario": {"kind": "fail", ...}}
- `DELETE /_simulator/scenarios`                  → back to the configured scenarios
- `GET  /_simulator/faults`                       → active faults with `remaining`
- `POST /_simulator/faults`     {"kind": "throttle", "endpoint": "create", "times": 2, ...}
- `DELETE /_simulator/faults`                     → clear all faults
- `GET  /_simulator/executions[?instance_id=...]` → AMC-shaped records, oldest first
- `GET  /_simulator/stats`                        → {endpoint: requests served}
- `GET  /_simulator/tokens`                       → {"access_tokens": [...], "url_signatures": [...]}:
  every access token and X-Amz-Signature issued since start (secrets; for leak tests)
- `POST /_simulator/revoke-tokens`                → every issued access token becomes invalid (401)
- `POST /_simulator/advance-clock {"seconds": n}` → move the simulator clock forward
- `POST /_simulator/reset`                        → forget executions, workflows, tokens, faults, stats
- `GET  /_simulator/instances`
- `POST /_simulator/instances`  {"instance_id": ..., "advertiser_id": ..., "marketplace_id": ...}

Endpoint names (faults and stats): token, create, get, list, cancel, download_urls, download, workflows.

Behaviour worth knowing:

- Header checks, in order: missing/unknown/expired bearer → 401; ClientId missing or not the token's
  → 403; AdvertiserId/MarketplaceId missing → 400; unknown instance → 404; advertiser or marketplace
  not the instance's → 403. Errors are `{"code": "<status>", "details": ...}`.
- The simulator clock drives statuses, token expiry, URL expiry and the daily quota (per instance per
  UTC day; 429 with Retry-After = seconds to the next UTC midnight).
- Faults: `times` consumes one per matching request, `probability` uses `SimulatorConfig.seed`;
  `delay_seconds` delays any fault (a `slow` fault is just the delay). `revoke_token` revokes every
  token and lets the request fail with 401. `drop` closes the socket with no answer;
  `lost_create_response` creates the execution, then drops; `truncate_download` sends the full
  Content-Length and half the body; `throttle`/`error500` on downloads answer in S3 XML.
- Saved workflows (`workflowId` in a create) must exist (404 otherwise); ad hoc creates do not.
- With `db_path`, executions, saved workflows, tokens, instances and the clock offset are kept in
  SQLite; result files are regenerated (deterministically) on demand.
"""

from amc_pipeline.simulator.app import SimulatorApp
from amc_pipeline.simulator.config import Fault, Scenario, SimulatedAccount, SimulatorConfig
from amc_pipeline.simulator.server import SimulatorServer, create_app, serve
from amc_pipeline.simulator.state import SimulatorState, workflow_key

__all__ = [
    "Fault",
    "Scenario",
    "SimulatedAccount",
    "SimulatorApp",
    "SimulatorConfig",
    "SimulatorServer",
    "SimulatorState",
    "create_app",
    "serve",
    "workflow_key",
]
