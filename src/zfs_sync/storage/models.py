"""The schema. Changed only together with a migration in ``storage/migrations``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from zfs_sync.storage.types import Guid, UTCDateTime

ID = String(36)


class Base(DeclarativeBase):
    pass


class System(Base):
    __tablename__ = "systems"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255), unique=True)
    platform: Mapped[str] = mapped_column(String(64))
    ssh_hostname: Mapped[str | None] = mapped_column(String(255))
    ssh_user: Mapped[str | None] = mapped_column(String(64))
    ssh_port: Mapped[int] = mapped_column(Integer, default=22)
    zfs_path: Mapped[str] = mapped_column(String(255), default="zfs")
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_timeout_seconds: Mapped[int | None] = mapped_column(Integer)
    # True when an admin set the timeout: the agent's interval then no longer changes it.
    heartbeat_timeout_override: Mapped[bool] = mapped_column(Boolean, default=False)
    agent_version: Mapped[str | None] = mapped_column(String(64))
    zfs_version: Mapped[str | None] = mapped_column(String(64))
    capabilities: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    api_key_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    api_key_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Dataset(Base):
    """A dataset a host reported, with or without snapshots."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("system_id", "name", name="uq_datasets_system_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    system_id: Mapped[str] = mapped_column(ID, ForeignKey("systems.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    pool: Mapped[str] = mapped_column(String(255))
    encryption: Mapped[bool] = mapped_column(Boolean, default=False)
    receive_resume_token: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Snapshot(Base):
    __tablename__ = "snapshots"
    __table_args__ = (
        # The only index: queries go through a system (or a system and dataset), and every
        # further index slows the ingest of full reports (bench/README.md).
        UniqueConstraint("system_id", "dataset", "name", name="uq_snapshots_system_dataset_name"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    system_id: Mapped[str] = mapped_column(ID, ForeignKey("systems.id", ondelete="CASCADE"))
    pool: Mapped[str] = mapped_column(String(255))
    dataset: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    guid: Mapped[int | None] = mapped_column(Guid)
    createtxg: Mapped[int | None] = mapped_column(BigInteger)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    size: Mapped[int | None] = mapped_column(BigInteger)
    referenced: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SyncGroup(Base):
    __tablename__ = "sync_groups"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    sync_interval_seconds: Mapped[int] = mapped_column(Integer, default=3600)
    directional: Mapped[bool] = mapped_column(Boolean, default=False)
    hub_system_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("systems.id", ondelete="SET NULL")
    )
    datasets: Mapped[list[str]] = mapped_column(JSON, default=list)
    snapshot_pattern: Mapped[str] = mapped_column(String(255), default="")
    allow_rollback: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class GroupMember(Base):
    __tablename__ = "sync_group_members"

    group_id: Mapped[str] = mapped_column(
        ID, ForeignKey("sync_groups.id", ondelete="CASCADE"), primary_key=True
    )
    system_id: Mapped[str] = mapped_column(
        ID, ForeignKey("systems.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    root: Mapped[str | None] = mapped_column(String(255))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Event(Base):
    """Append-only activity log."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_type_id", "type", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    type: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16), default="info")
    system_id: Mapped[str | None] = mapped_column(ID, index=True)
    sync_group_id: Mapped[str | None] = mapped_column(ID, index=True)
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AppSetting(Base):
    """Values shared by every witness replica (admin token hash, session secret)."""

    __tablename__ = "app_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
