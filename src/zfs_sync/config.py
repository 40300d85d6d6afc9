"""Witness settings: defaults < YAML file < ``ZFS_SYNC_*`` environment < ``*_FILE`` secrets.

The YAML file is ``--config``, else ``$ZFS_SYNC_CONFIG``, else ``/etc/zfs-sync/zfs_sync.yaml``
when it exists. Its keys are the setting names in lower case without the prefix; an unknown
key is an error that names it, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_PREFIX = "ZFS_SYNC_"
SYSTEM_CONFIG = Path("/etc/zfs-sync/zfs_sync.yaml")
SYSTEM_DATA_DIR = Path("/var/lib/zfs-sync")
USER_DATA_DIR = Path("~/.local/share/zfs-sync")
SECRET_FIELDS = ("admin_token", "session_secret", "database_url")
DB_FILENAME = "zfs_sync.db"


class ConfigError(Exception):
    """The configuration cannot be used; the message says what to fix."""


class Webhook(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str
    events: list[str] = Field(default_factory=list)
    secret: str | None = None


class Settings(BaseModel):
    """Every setting of the witness. See docs/configuration.md."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    host: str = "0.0.0.0"
    port: int = Field(8000, ge=1, le=65535)
    database_url: str | None = None
    data_dir: Path | None = None
    admin_token: str | None = None
    public_read: bool = True
    open_registration: bool = False
    open_admin: bool = False
    heartbeat_timeout_seconds: int = Field(300, ge=1)
    late_grace_seconds: int = Field(3600, ge=0)
    max_protect_seconds: int = Field(2592000, ge=0)
    monitor_interval_seconds: int = Field(30, ge=1)
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    auth_failures_per_minute: int = Field(30, ge=1)
    trusted_proxies: list[str] = Field(default_factory=list)
    cors_origins: list[str] = Field(default_factory=list)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    log_file: Path | None = None
    event_retention_days: int = Field(90, ge=1)
    webhooks: list[Webhook] = Field(default_factory=list)
    session_secret: str | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("admin_token")
    @classmethod
    def _token_length(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 16:
            raise ValueError("the admin token must be at least 16 characters long")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
        return [item.strip() for item in value]

    def resolved_data_dir(self) -> Path:
        return self.data_dir if self.data_dir is not None else default_data_dir()

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir() / DB_FILENAME}"

    def masked(self) -> dict[str, Any]:
        """The effective settings for display, with secrets masked."""
        data = self.model_dump(mode="json")
        data["data_dir"] = str(self.resolved_data_dir())
        data["database_url"] = _mask_url(self.resolved_database_url())
        for key in ("admin_token", "session_secret"):
            if data[key]:
                data[key] = "********"
        for hook in data["webhooks"]:
            if hook.get("secret"):
                hook["secret"] = "********"
        return data


def _mask_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        creds, _, host = rest.rpartition("@")
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:********@{host}" if ":" in creds else url
    return url


def default_data_dir() -> Path:
    """``/var/lib/zfs-sync`` when it can be created and written, else the per-user path."""
    try:
        SYSTEM_DATA_DIR.mkdir(parents=True, exist_ok=True)
        if os.access(SYSTEM_DATA_DIR, os.W_OK | os.X_OK):
            return SYSTEM_DATA_DIR
    except OSError:
        pass
    return USER_DATA_DIR.expanduser()


def _config_path(explicit: str | os.PathLike[str] | None, env: dict[str, str]) -> Path | None:
    if explicit:
        return Path(explicit)
    if env.get(ENV_PREFIX + "CONFIG"):
        return Path(env[ENV_PREFIX + "CONFIG"])
    return SYSTEM_CONFIG if SYSTEM_CONFIG.exists() else None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of setting: value")
    unknown = sorted(str(key) for key in data if key not in Settings.model_fields)
    if unknown:
        raise ConfigError(
            f"unknown setting {unknown[0]!r} in {path}"
            + (f" (and {', '.join(unknown[1:])})" if unknown[1:] else "")
            + "; see `zfs-sync config show` for the valid names"
        )
    return data


def _env_value(name: str, raw: str) -> Any:
    """Lists and objects come from the environment as YAML/JSON; scalars as plain strings."""
    if name == "webhooks":
        return yaml.safe_load(raw)
    annotation = str(Settings.model_fields[name].annotation)
    if "list" in annotation:
        raw = raw.strip()
        if raw.startswith("["):
            return yaml.safe_load(raw)
        return [item.strip() for item in raw.split(",") if item.strip()]
    return raw


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the effective settings; ``overrides`` (tests, CLI flags) win over everything."""
    env = dict(os.environ if env is None else env)
    values: dict[str, Any] = {}
    path = _config_path(config_file, env)
    if path is not None:
        values.update(_read_yaml(path))
    for name in Settings.model_fields:
        key = ENV_PREFIX + name.upper()
        if key in env and env[key] != "":
            values[name] = _env_value(name, env[key])
    for name in SECRET_FIELDS:
        file_key = ENV_PREFIX + name.upper() + "_FILE"
        if env.get(file_key):
            try:
                values[name] = Path(env[file_key]).read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read {file_key}={env[file_key]}: {exc.strerror}"
                ) from None
    values.update(overrides)
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"invalid setting {where!r}: {first['msg']}") from None
