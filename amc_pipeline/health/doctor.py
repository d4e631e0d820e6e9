"""`amc-pipeline doctor`: the health checks in the terminal, for a person or a cron job.

Each line says what was checked and what was found; the exit status is non-zero when anything is
unhealthy, so it can gate a deployment or page someone.
"""

from collections.abc import Callable

from amc_pipeline.config import AccountConfig, ConfigError, PipelineConfig, Settings, load_config


def _check_account(account: AccountConfig, config: PipelineConfig, settings: Settings,
                   report: Callable[[bool, str, str], None]) -> None:
    """One line for the account (its variables set, its token refreshed), then one per instance
    (its executions listed with the account's token), so a failure names what fails."""
    from datetime import UTC, datetime, timedelta

    from amc_pipeline.amc.client import AmcClient, RetryPolicy
    from amc_pipeline.amc.errors import AmcError
    from amc_pipeline.credentials import MissingCredentials, account_credentials

    instances = config.instances_of(account.name)
    what = f"account {account.name}"
    try:
        credentials = account_credentials(account, settings.token_url)
    except MissingCredentials as exc:
        report(False, what, str(exc).removeprefix(f"{what}: "))
        return
    try:
        with AmcClient(settings.api_url, credentials, retry=RetryPolicy(budget_seconds=20)) as client:
            try:
                client.check_credentials()  # the token refresh alone, before any instance is asked
            except AmcError as exc:
                report(False, what, f"token refresh failed: {exc.error_type.value}: {exc.details or exc}")
                return
            report(True, what, f"token refreshed ({len(instances)} instance(s), at most "
                               f"{account.max_active_executions} executions in parallel)")
            since = datetime.now(UTC) - timedelta(hours=1)
            for instance in instances:
                try:
                    client.list_executions_page(instance, min_creation_time=since, limit=1)
                except AmcError as exc:
                    report(False, f"instance {instance.instance_id}",
                           f"{exc.error_type.value}: {exc.details or exc} (account {account.name})")
                else:
                    report(True, f"instance {instance.instance_id}",
                           f"executions listed at {settings.api_url} (account {account.name})")
    except ValueError as exc:  # a malformed AMC_API_URL
        report(False, what, str(exc))


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

    for account in config.accounts:
        _check_account(account, config, settings, report)

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
