"""The schema. Changed only together with a migration in ``storage/migrations``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
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
# Event ids: 64-bit on PostgreSQL; SQLite's INTEGER PRIMARY KEY (the rowid) is 64-bit already,
# and only that exact type makes it the rowid.
EventId = BigInteger().with_variant(Integer(), "sqlite")


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
    # The ``last_seen`` for which the monitor wrote ``system.offline``: one event per silence.
    offline_notified_seen: Mapped[datetime | None] = mapped_column(UTCDateTime)


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
    # False: the row exists only because snapshots of this dataset were reported (the guide's
    # scripts report no datasets); it goes away with its last snapshot.
    reported: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    # Summaries kept by every snapshot write, so the planner's inputs are cheap to load.
    snapshot_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    newest_timestamp: Mapped[datetime | None] = mapped_column(UTCDateTime)
    newest_name: Mapped[str | None] = mapped_column(String(255))


class Snapshot(Base):
    __tablename__ = "snapshots"
    __table_args__ = (
        # The only index: queries go through a system (or a system and dataset), and every
        # further index slows the ingest of full reports (bench/README.md).
        UniqueConstraint("system_id", "dataset", "name", name="uq_snapshots_system_dataset_name"),
        # The planner reads each dataset's newest snapshots only (a window by time).
        Index("ix_snapshots_window", "system_id", "dataset", "timestamp"),
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

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
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


class SyncState(Base):
    """What the witness remembers of one (group, logical dataset, target) edge.

    The status shown by the API is derived afresh from facts by the planner; this row keeps
    what facts cannot show (the agent's last claim) and the last derived status, so that a
    change of status is written to the event log exactly once.
    """

    __tablename__ = "sync_states"
    __table_args__ = (
        UniqueConstraint(
            "sync_group_id", "dataset", "target_system_id", name="uq_sync_states_edge"
        ),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    sync_group_id: Mapped[str] = mapped_column(ID, ForeignKey("sync_groups.id", ondelete="CASCADE"))
    dataset: Mapped[str] = mapped_column(String(255))  # logical
    target_system_id: Mapped[str] = mapped_column(
        ID, ForeignKey("systems.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str | None] = mapped_column(String(16))  # last derived status
    reason: Mapped[str | None] = mapped_column(Text)
    claim_status: Mapped[str | None] = mapped_column(String(16))
    claim_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_error: Mapped[str | None] = mapped_column(Text)
    claim_snapshot_name: Mapped[str | None] = mapped_column(String(255))
    claim_snapshot_guid: Mapped[int | None] = mapped_column(Guid)
    # The target's newest snapshot when the claim was made ("" name: it had none).
    claim_target_newest_name: Mapped[str | None] = mapped_column(String(255))
    claim_target_newest_guid: Mapped[int | None] = mapped_column(Guid)
    claim_action_id: Mapped[str | None] = mapped_column(String(64))
    # The last successful sync, carried over when a newer claim replaces the one it came from.
    last_sync: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_transfer_bytes: Mapped[int | None] = mapped_column(BigInteger)
    last_transfer_seconds: Mapped[float | None] = mapped_column(Float)
    last_check: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set when the monitor wrote ``sync.late`` for this edge; cleared with ``sync.late_cleared``.
    late_since: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ConflictRecord(Base):
    """A conflict's lifecycle: open -> resolved | ignored, or cleared when facts move on."""

    __tablename__ = "conflicts"
    __table_args__ = (
        UniqueConstraint(
            "sync_group_id", "dataset", "target_system_id", "type", name="uq_conflicts_key"
        ),
        Index("ix_conflicts_status", "status"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    sync_group_id: Mapped[str] = mapped_column(ID, ForeignKey("sync_groups.id", ondelete="CASCADE"))
    dataset: Mapped[str] = mapped_column(String(255))
    target_system_id: Mapped[str] = mapped_column(ID, ForeignKey("systems.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    source_system_id: Mapped[str | None] = mapped_column(ID)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16))
    resolution: Mapped[str | None] = mapped_column(String(32))
    # rollback_target: the target snapshots the admin agreed to discard [{name, guid}].
    allowed_discard: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    note: Mapped[str | None] = mapped_column(Text)
    # True once the facts no longer show the conflict after its resolution: the resolution
    # was carried out and no longer steers the planner (a new divergence needs a new one).
    applied: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookCursor(Base):
    """Delivery state of one webhook URL: every event up to ``last_event_id`` is done."""

    __tablename__ = "webhook_cursors"

    url: Mapped[str] = mapped_column(String(2048), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(EventId, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PlanRevision(Base):
    """One row: a random value replaced by every write that can change a plan's inputs.

    Readers compare it with the value their cached plans were made at (``plan_cache.py``).
    Random rather than counted, so that a database recreated or restored under the same
    path never repeats a value an earlier one had.
    """

    __tablename__ = "plan_revision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    value: Mapped[int] = mapped_column(BigInteger)
