"""`amc-pipeline`: the simulator, the demo, and terminal views of the execution store."""

import json
import sys
from pathlib import Path

import click

from amc_pipeline.config import ConfigError, load_config


def _config(path: str | None):
    try:
        return load_config(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def main() -> None:
    """amc-pipeline: AMC workflow executions from request to landed Parquet, driven by Dagster."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
@click.option("--db", "db_path", type=click.Path(dir_okay=False), help="Keep executions in this SQLite file.")
@click.option("--config", "sim_config", type=click.Path(exists=True, dir_okay=False),
              help="JSON or YAML simulator config (timings, instances, scenarios).")
def simulator(host: str, port: int, db_path: str | None, sim_config: str | None) -> None:
    """Run the AMC simulator (API, token endpoint, pre-signed downloads, admin under /_simulator)."""
    import yaml

    from amc_pipeline.simulator import SimulatorConfig, serve

    data = yaml.safe_load(Path(sim_config).read_text()) if sim_config else None
    try:
        cfg = SimulatorConfig.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise click.ClickException(f"{sim_config}: {exc}") from None
    serve(cfg, host=host, port=port, db_path=db_path)


@main.command()
@click.option("--headless", is_flag=True, help="No UI: run until the demo's work is done, print a summary.")
@click.option("--port", default=3000, show_default=True, type=int, help="Dagster UI port.")
@click.option("--sim-port", default=8765, show_default=True, type=int, help="Simulator port.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Pipeline YAML (default: demo).")
def demo(headless: bool, port: int, sim_port: int, config_path: str | None) -> None:
    """The main job: simulator + Dagster on the shipped demo config, nothing to set up."""
    from amc_pipeline import demo as demo_mod

    config = _config(config_path)
    if headless:
        summary = demo_mod.run_headless(config)
        click.echo(summary.render())
        if not summary.landed:
            raise click.ClickException("the demo landed no partition")
        return
    sys.exit(demo_mod.run_ui(config, port=port, sim_port=sim_port))


@main.command()
@click.option("--workflow", help="Only this workflow.")
@click.option("--status", "status_filter", help="Only this status (QUEUED, PENDING, RUNNING, SUCCESS, ...).")
@click.option("--limit", default=50, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(workflow: str | None, status_filter: str | None, limit: int, as_json: bool) -> None:
    """The executions in the store, newest first."""
    from amc_pipeline.health.views import execution_rows, render_table

    rows = execution_rows(workflow=workflow, status=status_filter.upper() if status_filter else None, limit=limit)
    if as_json:
        click.echo(json.dumps(rows, default=str, indent=2))
    else:
        click.echo(render_table(rows))


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False))
def doctor(config_path: str | None) -> None:
    """Check config, store, credentials, AMC reachability and stuck executions; non-zero when unhealthy."""
    from amc_pipeline.health.doctor import run_doctor

    ok = run_doctor(config_path, echo=click.echo)
    sys.exit(0 if ok else 1)


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Print the plan (with SQL diffs) and change nothing at AMC.")
def sync(config_path: str | None, dry_run: bool) -> None:
    """Keep saved workflows and AMC schedules equal to the YAML: create or update, never delete."""
    from amc_pipeline import sync as sync_mod
    from amc_pipeline.amc.errors import AmcError
    from amc_pipeline.config import Settings
    from amc_pipeline.credentials import MissingCredentials, account_credentials, env_clients

    config = _config(config_path)
    settings = Settings.from_env()
    for account in config.accounts:  # every account's variables up front, before any change
        try:
            account_credentials(account, settings.token_url)
        except MissingCredentials as exc:
            raise click.ClickException(str(exc)) from None
    try:
        with env_clients(config, settings) as client:
            items = sync_mod.plan(client, config)
            click.echo(sync_mod.render(items))
            if dry_run:
                click.echo("dry run: nothing changed")
                return
            done = sync_mod.apply(client, config, items)
    except AmcError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"applied {len(done)} change(s)")


if __name__ == "__main__":
    main()
