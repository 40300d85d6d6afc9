"""Admin commands that talk to a witness over its HTTP API.

``zfs-sync --server URL --token TOKEN systems list``. Without ``--server`` the witness of the
settings is used (``http://127.0.0.1:<port>``); without ``--token``, ``ZFS_SYNC_TOKEN``, the
admin token setting, or ``<data dir>/admin-token``. Output is a table for people, or JSON
with ``--json`` for scripts. Systems and groups may be named by id or by hostname/name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import httpx

from zfs_sync.config import ConfigError, load_settings

API = "/api/v1"
PAGE = 1000

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


class Api:
    """A small client of the witness API that turns errors into readable ClickExceptions."""

    def __init__(self, server: str, token: str | None, timeout: float = 30.0) -> None:
        headers = {"X-API-Key": token} if token else {}
        self.client = httpx.Client(base_url=server.rstrip("/") + API, headers=headers,
                                   timeout=timeout)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise click.ClickException(
                f"cannot reach the witness at {self.client.base_url}: {exc}") from None
        if response.status_code >= 400:
            raise click.ClickException(_error_text(response))
        return response.json() if response.content else None

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params={k: v for k, v in params.items() if v is not None})


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        text = body.get("detail", response.text)
        if body.get("hint"):
            text += f" ({body['hint']})"
    except ValueError:
        text = response.text
    return f"{response.status_code}: {text}"


def _default_server(ctx: click.Context) -> tuple[str, str | None]:
    try:
        settings = load_settings(ctx.obj.get("config"))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    scheme = "https" if settings.tls_cert_file else "http"
    token = settings.admin_token
    if token is None:
        path = settings.resolved_data_dir() / "admin-token"
        token = _read_token(path)
    return f"{scheme}://{host}:{settings.port}", token


def _read_token(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def api(ctx: click.Context) -> Api:
    obj = ctx.find_root().obj
    server, token = obj.get("server"), obj.get("token")
    if server is None or token is None:
        default_server, default_token = _default_server(ctx.find_root())
        server, token = server or default_server, token or default_token
    return Api(server, token)


def emit(rows: Any, as_json: bool, table: Callable[[Any], None]) -> None:
    if as_json:
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
    else:
        table(rows)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def print_fields(data: dict[str, Any], keys: Sequence[str]) -> None:
    width = max(len(k) for k in keys)
    for key in keys:
        value = data.get(key)
        if isinstance(value, (dict, list)):
            value = json.dumps(value, sort_keys=True)
        click.echo(f"{key.ljust(width)}  {'-' if value is None else value}")


# -- resolving names -------------------------------------------------------------------------


def find_system(client: Api, ident: str) -> dict[str, Any]:
    for system in client.get("/systems", limit=PAGE):
        if ident in (system["id"], system["hostname"]):
            return dict(system)
    raise click.ClickException(f"no system with id or hostname {ident!r}")


def find_group(client: Api, ident: str) -> dict[str, Any]:
    for group in client.get("/sync-groups", limit=PAGE):
        if ident in (group["id"], group["name"]):
            return dict(group)
    raise click.ClickException(f"no sync group with id or name {ident!r}")


def hostnames(client: Api) -> dict[str, str]:
    return {s["id"]: s["hostname"] for s in client.get("/systems", limit=PAGE)}


# -- systems ---------------------------------------------------------------------------------

SYSTEM_FIELDS = ("id", "hostname", "platform", "status", "last_seen", "heartbeat_timeout_seconds",
                 "ssh_hostname", "ssh_user", "ssh_port", "zfs_path", "agent_version",
                 "zfs_version", "capabilities", "metadata", "created_at")


@click.group()
def systems() -> None:
    """Registered hosts (over the witness API)."""


@systems.command("list")
@json_option
@click.pass_context
def systems_list(ctx: click.Context, as_json: bool) -> None:
    """Every system with its heartbeat status."""
    rows = api(ctx).get("/systems", limit=PAGE)
    emit(rows, as_json, lambda rs: print_table(
        ["hostname", "status", "last_seen", "agent", "id"],
        [[r["hostname"], r["status"], r["last_seen"], r["agent_version"], r["id"]] for r in rs]))


@systems.command("show")
@click.argument("system")
@json_option
@click.pass_context
def systems_show(ctx: click.Context, system: str, as_json: bool) -> None:
    """One system, by id or hostname."""
    data = find_system(api(ctx), system)
    emit(data, as_json, lambda d: print_fields(d, SYSTEM_FIELDS))


@systems.command("delete")
@click.argument("system")
@click.option("--force", is_flag=True, help="Also when it is the hub of directional groups "
              "(those groups are disabled).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@click.pass_context
def systems_delete(ctx: click.Context, system: str, force: bool, yes: bool, as_json: bool) -> None:
    """Delete a system with its snapshots and group memberships."""
    client = api(ctx)
    data = find_system(client, system)
    if not yes:
        click.confirm(f"Delete {data['hostname']} ({data['id']}) and its snapshots?", abort=True)
    client.call("DELETE", f"/systems/{data['id']}", params={"force": str(force).lower()})
    result = {"deleted": data["id"], "hostname": data["hostname"]}
    emit(result, as_json, lambda r: click.echo(f"deleted {r['hostname']} ({r['deleted']})"))


@systems.command("rotate-key")
@click.argument("system")
@json_option
@click.pass_context
def systems_rotate_key(ctx: click.Context, system: str, as_json: bool) -> None:
    """Give a system a new API key (printed once; the old one stops working)."""
    client = api(ctx)
    data = find_system(client, system)
    result = client.call("POST", f"/systems/{data['id']}/api-key/rotate")
    emit(result, as_json, lambda r: click.echo(
        f"new API key of {data['hostname']} (shown once): {r['api_key']}"))


# -- groups ----------------------------------------------------------------------------------

GROUP_FIELDS = ("id", "name", "description", "enabled", "sync_interval_seconds", "directional",
                "hub_system_id", "datasets", "snapshot_pattern", "allow_rollback", "created_at")


@click.group()
def groups() -> None:
    """Sync groups (over the witness API)."""


def _members_text(group: dict[str, Any], names: dict[str, str]) -> str:
    return ", ".join(names.get(m["system_id"], m["system_id"])
                     + (f" (root {m['root']})" if m.get("root") else "")
                     for m in group["members"])


@groups.command("list")
@json_option
@click.pass_context
def groups_list(ctx: click.Context, as_json: bool) -> None:
    """Every sync group with its members."""
    client = api(ctx)
    rows = client.get("/sync-groups", limit=PAGE)
    names = hostnames(client) if not as_json else {}
    emit(rows, as_json, lambda rs: print_table(
        ["name", "enabled", "interval", "mode", "members", "id"],
        [[r["name"], "yes" if r["enabled"] else "no", r["sync_interval_seconds"],
          "directional" if r["directional"] else "bidirectional", _members_text(r, names), r["id"]]
         for r in rs]))


@groups.command("show")
@click.argument("group")
@json_option
@click.pass_context
def groups_show(ctx: click.Context, group: str, as_json: bool) -> None:
    """One sync group, by id or name."""
    client = api(ctx)
    data = find_group(client, group)

    def show(d: dict[str, Any]) -> None:
        print_fields(d, GROUP_FIELDS)
        click.echo(f"{'members'.ljust(21)}  {_members_text(d, hostnames(client)) or '-'}")

    emit(data, as_json, show)


@groups.command("create")
@click.argument("name")
@click.option("--member", "members", multiple=True, help="A member system (id or hostname); "
              "repeat for several.")
@click.option("--interval", type=int, default=3600, show_default=True,
              help="Sync interval in seconds.")
@click.option("--hub", help="Make the group directional with this system as the only source.")
@click.option("--dataset", "datasets", multiple=True, help="Logical dataset glob (repeatable).")
@click.option("--description", default="", help="Free text.")
@json_option
@click.pass_context
def groups_create(ctx: click.Context, name: str, members: tuple[str, ...], interval: int,
                  hub: str | None, datasets: tuple[str, ...], description: str,
                  as_json: bool) -> None:
    """Create a sync group."""
    client = api(ctx)
    ids = [find_system(client, m)["id"] for m in members]
    body: dict[str, Any] = {"name": name, "system_ids": ids, "sync_interval_seconds": interval,
                            "datasets": list(datasets), "description": description}
    if hub:
        hub_id = find_system(client, hub)["id"]
        body.update(directional=True, hub_system_id=hub_id)
        if hub_id not in ids:
            body["system_ids"] = [hub_id, *ids]
    result = client.call("POST", "/sync-groups", json=body)
    emit(result, as_json, lambda r: click.echo(f"created group {r['name']} ({r['id']})"))


@groups.command("add")
@click.argument("group")
@click.argument("system")
@click.option("--root", help="Dataset under which the group's datasets live on that host.")
@json_option
@click.pass_context
def groups_add(ctx: click.Context, group: str, system: str, root: str | None,
               as_json: bool) -> None:
    """Add a system to a group."""
    client = api(ctx)
    gid, sid = find_group(client, group)["id"], find_system(client, system)["id"]
    result = client.call("POST", f"/sync-groups/{gid}/systems",
                         json={"system_id": sid, "root": root})
    emit(result, as_json, lambda r: click.echo(f"added {system} to {r['name']}"))


@groups.command("remove")
@click.argument("group")
@click.argument("system")
@json_option
@click.pass_context
def groups_remove(ctx: click.Context, group: str, system: str, as_json: bool) -> None:
    """Remove a system from a group."""
    client = api(ctx)
    data, sid = find_group(client, group), find_system(client, system)["id"]
    client.call("DELETE", f"/sync-groups/{data['id']}/systems/{sid}")
    emit({"group": data["id"], "removed": sid}, as_json,
         lambda r: click.echo(f"removed {system} from {data['name']}"))


def _set_enabled(ctx: click.Context, group: str, enabled: bool, as_json: bool) -> None:
    client = api(ctx)
    gid = find_group(client, group)["id"]
    result = client.call("PUT", f"/sync-groups/{gid}", json={"enabled": enabled})
    word = "enabled" if enabled else "disabled"
    emit(result, as_json, lambda r: click.echo(f"{word} group {r['name']}"))


@groups.command("enable")
@click.argument("group")
@json_option
@click.pass_context
def groups_enable(ctx: click.Context, group: str, as_json: bool) -> None:
    """Enable a group (the planner plans it again)."""
    _set_enabled(ctx, group, True, as_json)


@groups.command("disable")
@click.argument("group")
@json_option
@click.pass_context
def groups_disable(ctx: click.Context, group: str, as_json: bool) -> None:
    """Disable a group (no instructions for it until enabled)."""
    _set_enabled(ctx, group, False, as_json)


# -- status, conflicts, events ---------------------------------------------------------------


def _print_status(statuses: list[dict[str, Any]], names: dict[str, str]) -> None:
    for st in statuses:
        breakdown = sorted(st["status_breakdown"].items())
        counts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in breakdown)
        flags = "" if st["enabled"] else " (disabled)"
        click.echo(f"{st['name']}{flags}: {counts or 'no datasets'}; {st['late_count']} late, "
                   f"{st['open_conflicts']} open conflicts, "
                   f"{st['pending_actions']} pending actions")
        if st.get("reason"):
            click.echo(f"  {st['reason']}")
        for ds in st["datasets"]:
            for s in ds["systems"]:
                if s["status"] == "in_sync" and not s["late"]:
                    continue
                why = f": {s['reason']}" if s.get("reason") else ""
                late = " LATE" if s["late"] else ""
                click.echo(f"  {ds['dataset']} on {names.get(s['system_id'], s['hostname'])}: "
                           f"{s['status'].replace('_', ' ')}{late}, lag {s['lag_seconds']} s{why}")


@click.command("status")
@click.argument("group", required=False)
@json_option
@click.pass_context
def status(ctx: click.Context, group: str | None, as_json: bool) -> None:
    """What is out of sync and why, for one group or all of them."""
    client = api(ctx)
    chosen = [find_group(client, group)] if group else client.get("/sync-groups", limit=PAGE)
    statuses = [client.get(f"/sync/groups/{g['id']}/status") for g in chosen]
    emit(statuses, as_json, lambda sts: _print_status(sts, {}) if sts else click.echo("no groups"))


@click.group()
def conflicts() -> None:
    """Conflicts the planner found (over the witness API)."""


@conflicts.command("list")
@click.option("--group", help="Only this group (id or name).")
@click.option("--status", "state", default="open", show_default=True,
              help="open, resolved, ignored, cleared, or all.")
@json_option
@click.pass_context
def conflicts_list(ctx: click.Context, group: str | None, state: str, as_json: bool) -> None:
    """Conflicts, open ones by default."""
    client = api(ctx)
    gid = find_group(client, group)["id"] if group else None
    rows = client.get("/conflicts", sync_group_id=gid,
                      status=None if state == "all" else state, limit=PAGE)
    names = hostnames(client) if not as_json else {}
    emit(rows, as_json, lambda rs: print_table(
        ["id", "type", "dataset", "target", "status", "detected_at"],
        [[r["id"], r["type"], r["dataset"], names.get(r["target_system_id"], r["target_system_id"]),
          r["status"], r["detected_at"]] for r in rs]))


@conflicts.command("resolve")
@click.argument("conflict_id")
@click.argument("strategy", type=click.Choice(
    ["rollback_target", "rename_target_aside", "ignore", "manual"]))
@click.option("--note", help="Why (kept with the resolution).")
@json_option
@click.pass_context
def conflicts_resolve(ctx: click.Context, conflict_id: str, strategy: str, note: str | None,
                      as_json: bool) -> None:
    """Resolve a conflict with a strategy."""
    result = api(ctx).call("POST", f"/conflicts/{conflict_id}/resolve",
                           json={"strategy": strategy, "note": note})
    emit(result, as_json, lambda r: click.echo(f"conflict {r['id']} is {r['status']} ({strategy})"))


@click.group()
def events() -> None:
    """The witness's event log (over the witness API)."""


@events.command("tail")
@click.option("-n", "--lines", "count", type=int, default=20, show_default=True,
              help="How many of the newest events.")
@click.option("--type", "type_", help="Only this type or prefix (e.g. sync, system.offline).")
@json_option
@click.pass_context
def events_tail(ctx: click.Context, count: int, type_: str | None, as_json: bool) -> None:
    """The newest events, oldest first."""
    rows = list(reversed(api(ctx).get("/events", limit=max(1, min(count, PAGE)), type=type_)))
    emit(rows, as_json, print_events)


def print_events(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        click.echo(f"{r['created_at']} {r['severity'].upper():7} {r['type']}: {r['message']}")


def register(main: click.Group) -> None:
    for command in (systems, groups, status, conflicts, events):
        main.add_command(command)
