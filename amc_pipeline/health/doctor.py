"""`amc-pipeline doctor`: the health checks in the terminal, for a person or a cron job.

Each line says what was checked and what was found; the exit status is non-zero when anything is
unhealthy, so it can gate a deployment or page someone.
"""

import os
from collections.abc import Callable

from amc_pipeline.config import ConfigError, Settings, load_config

CREDENTIAL_VARS = ("AMC_CLIENT_ID", "AMC_CLIENT_SECRET", "AMC_REFRESH_TOKEN")


def run_doctor(config_path: str | None, echo: Callable[[str], None] = print) -> bool:
    ok = True

    def report(good: bool, what: str, detail: str) -> None:
        nonlocal ok
        ok = ok and good
        echo(f"{'ok  ' if good else 'FAIL'}  {what}: {detail}")

    try:
        config = load_config(config_path)
        report(True, "config", f"{len(config.instances)} instance(s), {len(config.workflows)} workflow(s)")
    except ConfigError as exc:
        report(False, "config", str(exc))
        return False

    settings = Settings.from_env()
    try:
        from amc_pipeline.store.cache import store_for

        store = store_for(settings.database_url)
        store.list_executions(limit=1)
        report(True, "store", f"reachable ({store.engine.url.render_as_string(hide_password=True)})")
    except Exception as exc:  # any driver error means unreachable; say which
        report(False, "store", f"unreachable: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        return False

    missing = [v for v in CREDENTIAL_VARS if not os.environ.get(v)]
    if missing:
        report(False, "credentials", f"environment variable(s) not set: {', '.join(missing)}")
    else:
        from amc_pipeline.amc.auth import AmcCredentials
        from amc_pipeline.amc.client import AmcClient, RetryPolicy
        from amc_pipeline.health.status import amc_probe_for

        credentials = AmcCredentials(client_id=os.environ["AMC_CLIENT_ID"],
                                     client_secret=os.environ["AMC_CLIENT_SECRET"],
                                     refresh_token=os.environ["AMC_REFRESH_TOKEN"], token_url=settings.token_url)
        try:
            with AmcClient(settings.api_url, credentials, retry=RetryPolicy(budget_seconds=20)) as client:
                problem = amc_probe_for(lambda: client, config)()
        except ValueError as exc:  # a malformed AMC_API_URL
            problem = str(exc)
        report(problem is None, "AMC", problem or f"token refreshed and executions listed at {settings.api_url}")

    from amc_pipeline.health.status import failed_executions, monitor_health, stuck_executions

    health = monitor_health(store, config)
    report(health.healthy, "monitor", "; ".join(health.problems) or
           f"current (last successful poll: {health.facts['last_successful_poll']})")
    for workflow in config.workflows:
        stuck = stuck_executions(store, workflow)
        failed = failed_executions(store, workflow, max_landing_attempts=config.monitor.max_landing_attempts)
        detail = (f"{len(stuck)} stuck" + (f" ({', '.join(s.partition_key for s in stuck[:5])})" if stuck else "")
                  + f", {len(failed)} failed"
                  + (f" (first: {failed[0].partition_key} {failed[0].error_type})" if failed else ""))
        report(not stuck and not failed, f"workflow {workflow.name}", detail)
    return ok
