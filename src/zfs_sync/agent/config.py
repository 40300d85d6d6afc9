"""The agent's config file (``/etc/zfs-sync/agent.yaml``), parsed strictly.

One table, ``OPTIONS``, defines every key: its type, default and help. The parser, the
``config-check`` output and the reference in ``docs/agent.md`` (``zfs-sync-agent config-check
--reference``) are all generated from it, so they cannot drift apart. Unknown keys are an
error (a typo must not silently fall back to a default), and every value that can reach a
command line is checked here once more by the command builders.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zfs_sync.agent.config_values import (
    API_PREFIX,
    ConfigError,
    DatasetFilter,
    _bool,
    _command,
    _dataset_filter,
    _float,
    _hold_tag,
    _identifier,
    _int,
    _log_level,
    _path,
    _server_url,
    _ssh_options,
    _str,
    parse_size,
)

__all__ = [
    "API_PREFIX",
    "OPTIONS",
    "AgentConfig",
    "ConfigError",
    "DatasetFilter",
    "load_config",
    "parse_config",
    "parse_size",
]

DEFAULT_CONFIG_PATH = "/etc/zfs-sync/agent.yaml"
CONFIG_ENV = "ZFS_SYNC_AGENT_CONFIG"



@dataclass(frozen=True)
class AgentConfig:
    server_url: str
    system_id: str
    api_key: str = field(repr=False)
    api_key_file: str | None = None
    zfs_path: str = "zfs"
    ssh_path: str = "ssh"
    ssh_identity: str | None = None
    ssh_known_hosts: str | None = None
    ssh_config_file: str | None = None
    ssh_options: tuple[str, ...] = ()
    ssh_connect_timeout_seconds: int = 30
    datasets: DatasetFilter = field(default_factory=DatasetFilter)
    max_parallel: int = 1
    bandwidth_limit: int | None = None
    transfer_timeout_seconds: int = 86400
    http_timeout_seconds: float = 30.0
    interval_seconds: int = 900
    lock_file: str | None = None
    holds: bool = True
    hold_tag: str = "zfs-sync"
    allow_rollback: bool = True
    progress_interval_seconds: int = 60
    tls_verify: bool = True
    tls_ca_file: str | None = None
    log_level: str = "INFO"
    path: str | None = None  # where it was read from (not a key)

    def lock_path(self) -> Path:
        """Per-system lock: two agents for two systems on one machine never block each other."""
        if self.lock_file:
            return Path(self.lock_file)
        for directory in ("/run/lock", "/var/lock"):
            if os.access(directory, os.W_OK):
                return Path(directory) / f"zfs-sync-agent-{self.system_id}.lock"
        import tempfile

        return Path(tempfile.gettempdir()) / f"zfs-sync-agent-{self.system_id}.lock"


# --- the table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    key: str
    parse: Callable[[str, Any], Any]
    default: Any
    help: str
    shown_default: str = ""


OPTIONS: tuple[Option, ...] = (
    Option("server_url", _server_url, None, "The witness, e.g. `http://witness:8000` "
           "(`/api/v1` is added when missing). Required.", "required"),
    Option("system_id", _identifier, None, "This host's system id, as `register` printed "
           "and wrote it. Required.", "required"),
    Option("api_key", _str, None, "This system's API key. Give this or `api_key_file`."),
    Option("api_key_file", _path, None, "A file holding the API key (first line), "
           "readable only by the agent's user."),
    Option("zfs_path", _command, "zfs", "The local `zfs` command. Reported in the heartbeat, "
           "so the witness builds this host's commands with it."),
    Option("ssh_path", _command, "ssh", "The ssh client used to reach a source."),
    Option("ssh_identity", _path, None, "Private key for ssh (`-i`); only this key is "
           "offered (`IdentitiesOnly=yes`)."),
    Option("ssh_known_hosts", _path, None, "known_hosts file for ssh "
           "(`UserKnownHostsFile`); host keys are always checked."),
    Option("ssh_config_file", _path, None, "An ssh_config file (`-F`) instead of "
           "`~/.ssh/config`."),
    Option("ssh_options", _ssh_options, [], "Extra `-o` options for ssh, as a list of "
           "`Option=value` strings (e.g. `Compression=no`)."),
    Option("ssh_connect_timeout_seconds", _int(1, 3600), 30, "ssh `ConnectTimeout`."),
    Option("datasets", _dataset_filter, {}, "`{include: [globs], exclude: [globs]}` over "
           "full dataset names; a dataset matches when it or an ancestor matches. Only "
           "matching datasets are reported, and the agent refuses to receive into others.",
           "everything"),
    Option("max_parallel", _int(1, 64), 1, "Transfers run at the same time (different "
           "datasets; one dataset's actions always run in order)."),
    Option("bandwidth_limit", parse_size, None, "Bytes per second for each transfer "
           "(`50M`, `1G`, or a number); null = unlimited."),
    Option("transfer_timeout_seconds", _int(10, 30 * 86400), 86400, "A transfer still "
           "running after this long is aborted and reported as an error."),
    Option("http_timeout_seconds", _float(1, 600), 30.0, "Timeout of each request to the "
           "witness."),
    Option("interval_seconds", _int(10, 86400), 900, "How often the agent runs (the timer's "
           "or `daemon`'s period); sent with heartbeats so the witness knows when to expect "
           "the next one."),
    Option("lock_file", _path, None, "The per-system lock that keeps cycles from overlapping.",
           "`/run/lock/zfs-sync-agent-<system_id>.lock`"),
    Option("holds", _bool, True, "Place a `zfs hold` on the current base snapshot on both "
           "sides (where ZFS supports holds), and release the previous one."),
    Option("hold_tag", _hold_tag, "zfs-sync", "Tag of those holds; the target system id is "
           "appended on the source (`zfs-sync:<id>`), so each target holds its own base."),
    Option("allow_rollback", _bool, True, "Carry out `rollback` actions (`zfs rollback -r`), "
           "which the witness only issues after an admin allowed them. `false` refuses them "
           "on this host whatever the witness says."),
    Option("progress_interval_seconds", _int(1, 86400), 60, "Seconds between progress log "
           "lines of a long transfer (on a terminal, progress is shown continuously)."),
    Option("tls_verify", _bool, True, "Verify the witness's TLS certificate."),
    Option("tls_ca_file", _path, None, "CA bundle for the witness's certificate."),
    Option("log_level", _log_level, "INFO", "DEBUG, INFO, WARNING or ERROR."),
)
_BY_KEY = {o.key: o for o in OPTIONS}


def parse_config(data: Mapping[str, Any], path: str | None = None) -> AgentConfig:
    """Build the config from a parsed YAML mapping; raise ConfigError naming the bad key."""
    if not isinstance(data, Mapping):
        raise ConfigError("the config file must be a YAML mapping of key: value")
    unknown = sorted(str(k) for k in data if k not in _BY_KEY)
    if unknown:
        hint = _suggest(unknown[0])
        raise ConfigError(f"unknown key(s): {', '.join(unknown)}{hint}")
    values: dict[str, Any] = {}
    for option in OPTIONS:
        raw = data.get(option.key)
        if raw is None:
            if option.default is None and option.shown_default == "required":
                raise ConfigError(f"{option.key} is required")
            raw = option.default
            if raw is None:
                values[option.key] = None
                continue
        values[option.key] = option.parse(option.key, raw)
    values["api_key"] = _api_key(values.get("api_key"), values.get("api_key_file"), path)
    return AgentConfig(**values, path=path)


def _suggest(key: str) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(_BY_KEY), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _api_key(inline: str | None, key_file: str | None, config_path: str | None) -> str:
    if inline and key_file:
        raise ConfigError("give api_key or api_key_file, not both")
    if inline:
        return inline
    if not key_file:
        raise ConfigError("api_key or api_key_file is required")
    file = Path(key_file)
    if not file.is_absolute() and config_path:
        file = Path(config_path).parent / file
    try:
        key = file.read_text().strip().splitlines()[0].strip()
    except (OSError, IndexError) as exc:
        raise ConfigError(f"api_key_file {file}: cannot read a key ({exc})") from None
    return key


def config_path(explicit: str | None = None) -> str:
    return explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH


def load_config(path: str | None = None) -> AgentConfig:
    chosen = config_path(path)
    try:
        text = Path(chosen).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {chosen}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{chosen} is not valid YAML: {exc}") from None
    try:
        return parse_config(data or {}, chosen)
    except ConfigError as exc:
        raise ConfigError(f"{chosen}: {exc}") from None


def effective_config(config: AgentConfig) -> dict[str, Any]:
    """The settings as YAML-able data, the key masked (for ``config-check``)."""
    shown: dict[str, Any] = {}
    for option in OPTIONS:
        value = getattr(config, option.key)
        if option.key == "api_key":
            value = "***" if value else None
        elif isinstance(value, DatasetFilter):
            value = {"include": list(value.include), "exclude": list(value.exclude)}
        elif isinstance(value, tuple):
            value = list(value)
        shown[option.key] = value
    return shown


def reference_markdown() -> str:
    """The config reference table of ``docs/agent.md`` (a test keeps the two identical)."""
    lines = ["| Key | Default | Meaning |", "|---|---|---|"]
    for option in OPTIONS:
        if option.shown_default:
            default = option.shown_default
        elif option.default is None or option.default == [] or option.default == {}:
            default = "none"
        else:
            default = f"`{yaml.safe_dump(option.default).strip().removesuffix('...').strip()}`"
        lines.append(f"| `{option.key}` | {default} | {option.help} |")
    return "\n".join(lines) + "\n"


def render_config(values: Mapping[str, Any]) -> str:
    """YAML text for ``register`` to write: the given keys, in table order."""
    ordered = {o.key: values[o.key] for o in OPTIONS if values.get(o.key) is not None}
    return "# zfs-sync-agent configuration (zfs-sync-agent config-check --reference)\n" + (
        yaml.safe_dump(ordered, sort_keys=False, default_flow_style=False)
    )
