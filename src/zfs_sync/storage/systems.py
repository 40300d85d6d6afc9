"""Systems: registration, updates, heartbeats, keys, deletion."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from zfs_sync.domain.health import HealthStatus, system_health, timeout_for_interval
from zfs_sync.storage import revision
from zfs_sync.storage.common import Conflict, NotFound, Page, new_id
from zfs_sync.storage.credentials import NewKey, new_system_key
from zfs_sync.storage.events import record_event
from zfs_sync.storage.models import GroupMember, SyncGroup, System

SYSTEM_FIELDS = (
    "hostname",
    "platform",
    "ssh_hostname",
    "ssh_user",
    "ssh_port",
    "zfs_path",
    "heartbeat_timeout_seconds",
)


class DuplicateHostname(Conflict):
    def __init__(self, hostname: str, system_id: str) -> None:
        super().__init__(f"hostname {hostname} is already registered")
        self.hostname = hostname
        self.system_id = system_id


class HubOfGroups(Conflict):
    def __init__(self, groups: list[str]) -> None:
        super().__init__("system is the hub of directional groups")
        self.groups = groups


def get_system(session: Session, system_id: str) -> System:
    system = session.get(System, system_id)
    if system is None:
        raise NotFound("system", system_id)
    return system


def list_systems(session: Session, limit: int = 100, offset: int = 0) -> Page[System]:
    total = session.scalar(select(func.count()).select_from(System)) or 0
    rows = session.scalars(select(System).order_by(System.hostname).limit(limit).offset(offset))
    return Page(list(rows), total)


def all_systems(session: Session) -> list[System]:
    return list(session.scalars(select(System).order_by(System.hostname)))


def find_by_hostname(session: Session, hostname: str) -> System | None:
    return session.scalars(select(System).where(System.hostname == hostname)).first()


def _apply_key(system: System, key: NewKey) -> None:
    system.api_key_id = key.key_id
    system.api_key_hash = key.key_hash


def register_system(
    session: Session, data: dict[str, Any], now: datetime, *, replace: bool = False
) -> tuple[System, str]:
    """Create a system (or, with ``replace``, re-key an existing hostname). Returns the key."""
    existing = find_by_hostname(session, data["hostname"])
    if existing is not None and not replace:
        raise DuplicateHostname(data["hostname"], existing.id)
    key = new_system_key()
    if existing is not None:
        _set_fields(existing, data)
        _apply_key(existing, key)
        existing.updated_at = now
        record_event(
            session,
            "system.replaced",
            f"System {existing.hostname} was re-registered (replace=true) and got a new key",
            system_id=existing.id,
            now=now,
        )
        return existing, key.key
    system = System(
        id=new_id(),
        meta={},
        capabilities={},
        heartbeat_timeout_override=False,
        created_at=now,
        updated_at=now,
        ssh_port=22,
        zfs_path="zfs",
    )
    _set_fields(system, data)
    _apply_key(system, key)
    session.add(system)
    session.flush()
    record_event(
        session,
        "system.registered",
        f"System {system.hostname} registered",
        system_id=system.id,
        data={"hostname": system.hostname, "platform": system.platform},
        now=now,
    )
    return system, key.key


def _set_fields(system: System, data: dict[str, Any]) -> None:
    for field in SYSTEM_FIELDS:
        if field in data:
            setattr(system, field, data[field])
    if "heartbeat_timeout_seconds" in data:
        system.heartbeat_timeout_override = data["heartbeat_timeout_seconds"] is not None
    if "metadata" in data:
        system.meta = data["metadata"] or {}


def update_system(
    session: Session, system_id: str, changes: dict[str, Any], now: datetime
) -> System:
    system = get_system(session, system_id)
    hostname = changes.get("hostname")
    if hostname and hostname != system.hostname:
        other = find_by_hostname(session, hostname)
        if other is not None:
            raise DuplicateHostname(hostname, other.id)
    _set_fields(system, changes)
    system.updated_at = now
    record_event(
        session,
        "system.updated",
        f"System {system.hostname} updated ({', '.join(sorted(changes)) or 'no fields'})",
        system_id=system.id,
        data={"fields": sorted(changes)},
        now=now,
    )
    return system


def hub_groups(session: Session, system_id: str) -> list[SyncGroup]:
    query = select(SyncGroup).where(
        SyncGroup.hub_system_id == system_id, SyncGroup.directional.is_(True)
    )
    return list(session.scalars(query.order_by(SyncGroup.name)))


def delete_system(session: Session, system_id: str, now: datetime, *, force: bool = False) -> None:
    """Delete a system with its snapshots, datasets and memberships (FK cascades)."""
    system = get_system(session, system_id)
    hubs = hub_groups(session, system_id)
    if hubs and not force:
        raise HubOfGroups([group.name for group in hubs])
    for group in hubs:
        group.hub_system_id = None
        group.enabled = False
        group.updated_at = now
        record_event(
            session,
            "group.disabled",
            f"Group {group.name} disabled: its hub {system.hostname} was deleted",
            sync_group_id=group.id,
            severity="warning",
            now=now,
        )
    session.execute(delete(GroupMember).where(GroupMember.system_id == system_id))
    hostname = system.hostname
    session.delete(system)
    record_event(
        session,
        "system.deleted",
        f"System {hostname} deleted with its snapshots and group memberships",
        system_id=system_id,
        severity="warning",
        data={"hostname": hostname, "forced": force},
        now=now,
    )


@dataclass(frozen=True)
class HeartbeatResult:
    system: System
    previous: HealthStatus


def record_heartbeat(
    session: Session,
    system_id: str,
    report: dict[str, Any],
    now: datetime,
    default_timeout: int,
) -> HeartbeatResult:
    """Mark the system seen at ``now``; write an ``online`` event if it was not online."""
    system = get_system(session, system_id)
    timeout = system.heartbeat_timeout_seconds or default_timeout
    previous = system_health(system.last_seen, timeout, now).status
    planned = (system.zfs_path, system.capabilities, system.heartbeat_timeout_seconds)
    going_back = system.last_seen is not None and now < system.last_seen
    system.last_seen = now
    for field in ("agent_version", "zfs_version", "zfs_path"):
        if report.get(field) is not None:
            setattr(system, field, report[field])
    if report.get("capabilities") is not None:
        system.capabilities = report["capabilities"]
    if report.get("metadata") is not None:
        system.meta = {**(system.meta or {}), **report["metadata"]}
    interval = report.get("interval_seconds")
    if interval and not system.heartbeat_timeout_override:
        system.heartbeat_timeout_seconds = timeout_for_interval(interval)
    # Plans read whether the host is online, its zfs path and capabilities; a heartbeat of
    # a host online before that changes none of them leaves cached plans valid.
    now_planned = (system.zfs_path, system.capabilities, system.heartbeat_timeout_seconds)
    if previous is not HealthStatus.ONLINE or going_back or now_planned != planned:
        revision.inputs_changed(session)
    if previous is not HealthStatus.ONLINE:
        record_event(
            session,
            "system.online",
            f"System {system.hostname} is online"
            + (" again" if previous is HealthStatus.OFFLINE else " (first heartbeat)"),
            system_id=system.id,
            data={"previous": previous.value},
            now=now,
        )
    return HeartbeatResult(system, previous)


def rotate_key(session: Session, system_id: str, now: datetime, *, by_admin: bool) -> str:
    system = get_system(session, system_id)
    key = new_system_key()
    _apply_key(system, key)
    system.updated_at = now
    record_event(
        session,
        "system.key_rotated",
        f"API key of {system.hostname} rotated" + (" by an admin" if by_admin else ""),
        system_id=system.id,
        now=now,
    )
    return key.key


def revoke_key(session: Session, system_id: str, now: datetime) -> None:
    system = get_system(session, system_id)
    session.execute(
        update(System)
        .where(System.id == system_id)
        .values(api_key_id=None, api_key_hash=None, updated_at=now)
    )
    record_event(
        session,
        "system.key_revoked",
        f"API key of {system.hostname} revoked",
        system_id=system.id,
        severity="warning",
        now=now,
    )
