"""The ``zfs-sync`` command: run the witness and administer it."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
import yaml

from zfs_sync import __version__
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
@click.version_option(__version__, prog_name="zfs-sync")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """zfs-sync witness: keeps ZFS snapshots in sync across a fleet of hosts.

    Settings come from defaults, then the YAML file, then ZFS_SYNC_* environment
    variables (see `zfs-sync config show`).
    """
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


@main.command()
@click.option("--host", help="Address to listen on (default 0.0.0.0, ZFS_SYNC_HOST).")
@click.option("--port", type=int, help="Port to listen on (default 8000, ZFS_SYNC_PORT).")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run the witness: API at /api/v1, interactive API docs at /docs.

    On first start it creates and migrates the database (SQLite at
    /var/lib/zfs-sync/zfs_sync.db, or ~/.local/share/zfs-sync when that is not writable)
    and generates the admin token into <data dir>/admin-token.
    """
    import uvicorn

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
        ssl_certfile=str(settings.tls_cert_file) if settings.tls_cert_file else None,
        ssl_keyfile=str(settings.tls_key_file) if settings.tls_key_file else None,
        log_config=None,
    )


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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
