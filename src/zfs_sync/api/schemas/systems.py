from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from zfs_sync.api.schemas.common import (
    CommandPath,
    Hostname,
    Metadata,
    OutModel,
    Platform,
    SshHostname,
    SshUser,
    StrictModel,
)
from zfs_sync.domain.health import HealthStatus

Port = int
TimeoutSeconds = int


class SystemCreate(StrictModel):
    hostname: Hostname
    platform: Platform = "unknown"
    ssh_hostname: SshHostname | None = None
    ssh_user: SshUser | None = None
    ssh_port: int = Field(22, ge=1, le=65535)
    zfs_path: CommandPath = "zfs"
    heartbeat_timeout_seconds: int | None = Field(None, ge=10, le=30 * 86400)
    metadata: Metadata = Field(default_factory=dict)


class SystemUpdate(StrictModel):
    """Partial update: only the fields sent change; ``null`` clears an optional field."""

    hostname: Hostname | None = None
    platform: Platform | None = None
    ssh_hostname: SshHostname | None = None
    ssh_user: SshUser | None = None
    ssh_port: int | None = Field(None, ge=1, le=65535)
    zfs_path: CommandPath | None = None
    heartbeat_timeout_seconds: int | None = Field(None, ge=10, le=30 * 86400)
    metadata: Metadata | None = None


class SystemPublic(OutModel):
    id: str
    hostname: str
    platform: str
    ssh_hostname: str | None
    ssh_user: str | None
    ssh_port: int
    zfs_path: str
    metadata: dict[str, Any]
    last_seen: datetime | None
    heartbeat_timeout_seconds: int
    status: HealthStatus
    agent_version: str | None
    zfs_version: str | None
    capabilities: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class SystemRegistered(SystemPublic):
    api_key: str = Field(description="Shown once: store it now; only its hash is kept.")


class HeartbeatIn(StrictModel):
    agent_version: str | None = Field(None, max_length=64)
    zfs_version: str | None = Field(None, max_length=64)
    zfs_path: CommandPath | None = None
    capabilities: dict[str, bool] | None = None
    interval_seconds: int | None = Field(None, ge=1, le=86400)
    metadata: Metadata | None = None


class HeartbeatOut(OutModel):
    system_id: str
    last_seen: datetime
    status: HealthStatus


class SystemHealth(OutModel):
    system_id: str
    hostname: str
    status: HealthStatus
    last_seen: datetime | None
    heartbeat_age_seconds: int | None
    heartbeat_timeout_seconds: int


class HealthList(OutModel):
    systems: list[SystemHealth]
    count: int


class KeyRotated(OutModel):
    api_key: str
    system_id: str
