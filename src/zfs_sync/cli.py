"""The ``zfs-sync`` command: run the witness and administer it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from zfs_sync import __version__, admin_cli
from zfs_sync.config import ConfigError, Settings, load_settings


def _settings(ctx: click.Context) -> Settings:
    try:
        return load_settings(ctx.obj.get("config"))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    envvar="ZFS_SYNC_CONFIG",
    help="YAML settings file (default: /etc/zfs-sync/zfs_sync.yaml if it exists).",
)
@click.option("--server", envvar="ZFS_SYNC_SERVER", metavar="URL",
              help="Witness URL for the admin commands (default: this host's witness).")
@click.option("--token", envvar="ZFS_SYNC_TOKEN",
              help="Admin token for the admin commands (default: the admin token setting, "
              "or <data dir>/admin-token).")
@click.version_option(__version__, prog_name="zfs-sync")
@click.pass_context
def main(ctx: click.Context, config: str | None, server: str | None, token: str | None) -> None:
    """zfs-sync witness: keeps ZFS snapshots in sync across a fleet of hosts.

    Settings come from defaults, then the YAML file, then ZFS_SYNC_* environment
    variables (see `zfs-sync config show`).
    """
    ctx.ensure_object(dict)
    ctx.obj.update(config=config, server=server, token=token)


@main.command()
@click.option("--host", help="Address to listen on (default 0.0.0.0, ZFS_SYNC_HOST).")
@click.option("--port", type=int, help="Port to listen on (default 8000, ZFS_SYNC_PORT).")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run the witness: dashboard at /, API at /api/v1, API docs at /docs.

    On first start it creates and migrates the database (SQLite at
    /var/lib/zfs-sync/zfs_sync.db, or ~/.local/share/zfs-sync when that is not writable)
    and generates the admin token into <data dir>/admin-token.
    """
    from zfs_sync.api.app import create_app
    from zfs_sync.bootstrap import ensure_admin_token, open_database
    from zfs_sync.logs import configure_logging
    from zfs_sync.storage.credentials import InsecureTokenFile

    settings = _settings(ctx)
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = settings.model_copy(update=overrides)
    configure_logging(settings)
    try:
        db = open_database(settings)
        generated = ensure_admin_token(db, settings)
    except InsecureTokenFile as exc:
        raise click.ClickException(f"refusing to start: {exc}") from None
    app = create_app(settings, db=db)
    from zfs_sync.maintenance import MaintenanceError, witness_lock
    from zfs_sync.monitor import Monitor

    monitor = Monitor(db, settings, on_tick=lambda r: app.state.metrics.observe_tick(r.seconds))
    try:
        with witness_lock(db):
            monitor.start()
            _run_uvicorn(app, settings, generated)
    except MaintenanceError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        monitor.stop()


def _run_uvicorn(app: Any, settings: Settings, generated: Any) -> None:
    import uvicorn

    scheme = "https" if settings.tls_cert_file else "http"
    click.echo(
        f"zfs-sync {__version__} witness on {scheme}://{settings.host}:{settings.port}/ "
        f"(database: {settings.masked()['database_url']})",
        err=True,
    )
    if generated is not None:
        click.echo(f"Generated the admin token: it is in {generated} (mode 0600).", err=True)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        # uvicorn believes X-Forwarded-* from loopback by default; only configured proxies
        # may say who the client is (the auth failure limit counts per client address).
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
        ssl_certfile=str(settings.tls_cert_file) if settings.tls_cert_file else None,
        ssl_keyfile=str(settings.tls_key_file) if settings.tls_key_file else None,
        log_config=None,
    )


@main.command()
@click.option("--once", is_flag=True, help="Run one tick and exit (for cron or a check).")
@click.pass_context
def monitor(ctx: click.Context, once: bool) -> None:
    """Run the monitor alone: offline systems, late edges, webhooks, event retention.

    `zfs-sync serve` already runs it; run it alone when the API runs elsewhere. With
    several witnesses on one PostgreSQL exactly one of them runs each tick.
    """
    from zfs_sync.bootstrap import open_database
    from zfs_sync.logs import configure_logging
    from zfs_sync.monitor import Monitor, tick
    from zfs_sync.storage.common import utcnow

    settings = _settings(ctx)
    configure_logging(settings)
    database = open_database(settings)
    if once:
        result = tick(database, settings, utcnow())
        click.echo(json.dumps({"ran": result.ran, "offline": result.offline, "late": result.late,
                               "late_cleared": result.late_cleared, "pruned": result.pruned,
                               "webhooks_sent": result.delivery.sent,
                               "webhooks_failed": result.delivery.failed}))
        return
    Monitor(database, settings).run_forever()


@main.group()
def config() -> None:
    """Inspect the effective settings."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
@click.pass_context
def config_show(ctx: click.Context, as_json: bool) -> None:
    """Print the effective settings (secrets masked) after file and environment."""
    data: dict[str, Any] = _settings(ctx).masked()
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(yaml.safe_dump(data, sort_keys=False).rstrip())


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Create the database if needed and apply every migration (also done at start)."""
    from zfs_sync.bootstrap import open_database

    settings = _settings(ctx)
    database = open_database(settings)
    click.echo(f"database at revision {database.current_revision()} (head)")


def _maintenance_db(ctx: click.Context) -> Any:
    from zfs_sync.bootstrap import open_database

    return open_database(_settings(ctx), migrate=False)


@db.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def db_backup(ctx: click.Context, path: Path) -> None:
    """Copy the live database to PATH (SQLite online backup API: consistent while the
    witness runs). For PostgreSQL, prints the pg_dump command to run."""
    from zfs_sync.maintenance import MaintenanceError, backup

    try:
        command = backup(_maintenance_db(ctx), path)
    except MaintenanceError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"PostgreSQL: run  {command}" if command else f"backup written to {path}")


@db.command("restore")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def db_restore(ctx: click.Context, path: Path) -> None:
    """Replace the SQLite database with the backup at PATH (stop the witness first: refused
    while one holds the database). For PostgreSQL, prints the psql command to run."""
    from zfs_sync.maintenance import MaintenanceError, restore

    try:
        command = restore(_maintenance_db(ctx), path)
    except MaintenanceError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"PostgreSQL: run  {command}" if command else f"database restored from {path}")


@db.command("check")
@click.pass_context
def db_check(ctx: click.Context) -> None:
    """Integrity (SQLite PRAGMA integrity_check) or connectivity (PostgreSQL), and whether
    every migration is applied. Exits 1 on a problem."""
    from zfs_sync.maintenance import check

    result = check(_maintenance_db(ctx))
    for line in result.lines:
        click.echo(line)
    if not result.ok:
        raise SystemExit(1)


@db.command("vacuum")
@click.pass_context
def db_vacuum(ctx: click.Context) -> None:
    """Reclaim space (VACUUM); safe while the witness runs, but writers wait meanwhile."""
    from zfs_sync.maintenance import vacuum

    vacuum(_maintenance_db(ctx))
    click.echo("vacuum done")


@db.command("analyze")
@click.pass_context
def db_analyze(ctx: click.Context) -> None:
    """Refresh the query planner's statistics (ANALYZE)."""
    from zfs_sync.maintenance import analyze

    analyze(_maintenance_db(ctx))
    click.echo("analyze done")


@main.group()
def admin() -> None:
    """Administrative actions on the witness's own database."""


@admin.command("rotate-token")
@click.pass_context
def admin_rotate_token(ctx: click.Context) -> None:
    """Replace the admin token; the new one is written to <data dir>/admin-token (0600).

    Every witness sharing the database accepts the new token at once. With
    ZFS_SYNC_ADMIN_TOKEN set, change that variable instead.
    """
    from zfs_sync.bootstrap import open_database
    from zfs_sync.storage.credentials import rotate_admin_token

    settings = _settings(ctx)
    if settings.admin_token:
        raise click.ClickException(
            "the admin token comes from ZFS_SYNC_ADMIN_TOKEN(_FILE) or the config file; "
            "change it there and restart"
        )
    database = open_database(settings)
    with database.write() as session:
        _, path = rotate_admin_token(session, settings.resolved_data_dir())
    click.echo(f"new admin token written to {path}")


admin_cli.register(main)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
