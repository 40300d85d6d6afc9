"""The bodies of the ``zfs-sync-agent`` commands (the parser is in ``main.py``)."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from zfs_sync.agent import config as cfg
from zfs_sync.agent.client import WitnessClient, WitnessError
from zfs_sync.agent.cycle import Agent, platform_name
from zfs_sync.agent.inventory import PoolMissing
from zfs_sync.agent.lock import LockBusy
from zfs_sync.agent.main import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    STOP,
    configure_logging,
    dump_yaml,
    install_signal_handlers,
)
from zfs_sync.agent.zfs import Zfs, ZfsError
from zfs_sync.domain import names

log = logging.getLogger("zfs_sync.agent")


def _load(args: argparse.Namespace) -> cfg.AgentConfig:
    config = cfg.load_config(args.config)
    configure_logging(args.log_level or config.log_level)
    return config


def _agent(args: argparse.Namespace, interval: int | None = None) -> Agent:
    return Agent(_load(args), stop=STOP, interval_seconds=interval)


# --- register ------------------------------------------------------------------------------


def _admin_token(args: argparse.Namespace) -> str:
    if args.admin_token_file:
        return Path(args.admin_token_file).read_text().strip()
    token = args.admin_token or os.environ.get("ZFS_SYNC_ADMIN_TOKEN")
    if not token:
        raise cfg.ConfigError("registration needs the admin token: --admin-token, "
                              "--admin-token-file or $ZFS_SYNC_ADMIN_TOKEN")
    return token


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def cmd_register(args: argparse.Namespace) -> int:
    path = Path(cfg.config_path(args.config))
    if path.exists() and not args.force:
        raise cfg.ConfigError(f"{path} exists; use --force to overwrite it")
    server = cfg._server_url("--server", args.server)
    body: dict[str, Any] = {
        "hostname": args.hostname or socket.gethostname(),
        "platform": args.platform or platform_name(),
        "ssh_port": args.ssh_port,
        "zfs_path": args.zfs_path,
    }
    if args.ssh_hostname:
        body["ssh_hostname"] = args.ssh_hostname
    if args.ssh_user:
        body["ssh_user"] = args.ssh_user
    with WitnessClient(server, None) as client:
        system = client.register(body, _admin_token(args), replace=args.replace)
    values: dict[str, Any] = {"server_url": args.server, "system_id": system["id"],
                              "zfs_path": args.zfs_path}
    if args.api_key_file:
        _write_private(Path(args.api_key_file), system["api_key"] + "\n")
        values["api_key_file"] = args.api_key_file
    else:
        values["api_key"] = system["api_key"]
    if args.include or args.exclude:
        values["datasets"] = {"include": args.include, "exclude": args.exclude}
    text = cfg.render_config(values)
    cfg.parse_config(yaml.safe_load(text), str(path))  # what we write must load
    _write_private(path, text)
    print(f"registered {body['hostname']} as system {system['id']}; wrote {path}")
    return EXIT_OK


# --- report / heartbeat / sync / run / daemon ----------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    agent = _agent(args)
    try:
        result = agent.report()
    finally:
        agent.close()
    print(dump_yaml(result).strip())
    return EXIT_OK


def cmd_heartbeat(args: argparse.Namespace) -> int:
    agent = _agent(args, args.interval)
    try:
        result = agent.heartbeat()
    finally:
        agent.close()
    print(dump_yaml(result).strip())
    return EXIT_OK


def cmd_sync(args: argparse.Namespace) -> int:
    install_signal_handlers()
    agent = _agent(args)
    try:
        summary = agent.locked_sync(args.dry_run)
    finally:
        agent.close()
    if not args.dry_run:
        print(f"sync: {summary.line()}")
    return EXIT_FAILED if summary.failed else EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    install_signal_handlers()
    agent = _agent(args)
    try:
        summary = agent.run_cycle()
    finally:
        agent.close()
    return EXIT_FAILED if summary.failed else EXIT_OK


def cmd_daemon(args: argparse.Namespace) -> int:
    install_signal_handlers()
    config = _load(args)
    interval = args.interval or config.interval_seconds
    agent = Agent(config, stop=STOP, interval_seconds=interval)
    log.info("daemon: a cycle every %d s", interval)
    try:
        while not STOP.is_set():
            started = time.monotonic()
            _one_cycle(agent)
            STOP.wait(max(0.0, interval - (time.monotonic() - started)))
    finally:
        agent.close()
    return EXIT_OK


def _one_cycle(agent: Agent) -> None:
    """A failing cycle (witness down, zfs busy) is logged; the next one tries again."""
    try:
        agent.run_cycle()
    except LockBusy as exc:
        log.info("%s; skipping this cycle", exc)
    except (WitnessError, ZfsError, PoolMissing, OSError, ValueError) as exc:
        log.error("cycle failed: %s", exc)


# --- status / may-destroy / config-check ---------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    agent = _agent(args)
    try:
        system_id = agent.config.system_id
        health = agent.client.system_health(system_id)
        states = agent.client.sync_states(system_id)
        pending = agent.client.instructions(system_id)
    finally:
        agent.close()
    print(f"system {system_id} ({health.get('hostname')}): {health.get('status')}, "
          f"last heartbeat {health.get('heartbeat_age_seconds')} s ago")
    for state in states if isinstance(states, list) else []:
        line = f"  {state.get('dataset')}: {state.get('status')}"
        if state.get("error_message") or state.get("reason"):
            line += f" ({state.get('error_message') or state.get('reason')})"
        print(line)
    print(f"pending actions: {pending.get('action_count', 0)}")
    return EXIT_OK


def _snapshot_argument(args: argparse.Namespace) -> str:
    if args.snapshot:
        return str(args.snapshot)
    target = os.environ.get("SANOID_TARGET", "")
    snap = os.environ.get("SANOID_SNAPNAME", "")
    if "@" in target:
        return target
    if target and snap:
        return f"{target}@{snap}"
    raise cfg.ConfigError("may-destroy needs SNAPSHOT (or sanoid's SANOID_TARGET/SNAPNAME)")


def protected_names(payload: Any) -> dict[str, str]:
    """``{"ds@snap": reason}`` from the protected-snapshots answer (a list, or an object
    holding one)."""
    items = payload
    if isinstance(payload, dict):
        lists = [v for v in payload.values() if isinstance(v, list)]
        items = lists[0] if lists else []
    found: dict[str, str] = {}
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        snap = item.get("snapshot") or item.get("snapshot_name") or item.get("name") or ""
        full = snap if "@" in str(snap) else f"{item.get('dataset')}@{snap}"
        found[full] = str(item.get("reason") or "protected")
    return found


def cmd_may_destroy(args: argparse.Namespace) -> int:
    snapshot = _snapshot_argument(args)
    try:
        names.validate_full_snapshot(snapshot)
    except names.InvalidName as exc:
        print(f"{snapshot}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    agent = _agent(args)
    try:
        protected = protected_names(agent.client.protected_snapshots(agent.config.system_id))
    except WitnessError as exc:
        print(f"keep {snapshot}: cannot ask the witness ({exc})", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        agent.close()
    if snapshot in protected:
        print(f"keep {snapshot}: the witness protects it ({protected[snapshot]})")
        return EXIT_FAILED
    print(f"{snapshot} may be destroyed")
    return EXIT_OK


def cmd_config_check(args: argparse.Namespace) -> int:
    if args.reference:
        print(cfg.reference_markdown(), end="")
        return EXIT_OK
    config = _load(args)
    print(f"# {config.path}: OK")
    print(dump_yaml(cfg.effective_config(config)).strip())
    zfs = Zfs(config.zfs_path)
    caps = zfs.capabilities()
    print(f"zfs: {config.zfs_path} ({zfs.version() or 'version unknown'}); "
          f"capabilities: {', '.join(k for k, v in caps.report().items() if v) or 'none'}; "
          f"zfs list -p: {'yes' if caps.list_parsable else 'no (using zfs get -p)'}")
    if args.offline:
        return EXIT_OK
    with WitnessClient(config.server_url, config.api_key, config.http_timeout_seconds,
                       verify=config.tls_ca_file or config.tls_verify, retries=0) as client:
        # The instructions need this system's own key: a read that proves the key works.
        client.instructions(config.system_id)
    print(f"witness: {config.server_url} accepts this system's key")
    return EXIT_OK
