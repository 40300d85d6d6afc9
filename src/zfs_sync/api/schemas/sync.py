from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field, model_validator

from zfs_sync.api.schemas.common import LogicalDataset, OutModel, StrictModel


class ActionOut(OutModel):
    action_id: str
    action_type: str
    sync_group_id: str
    dataset: str
    source_system_id: str
    target_system_id: str
    source_pool: str
    source_dataset: str
    target_pool: str
    target_dataset: str
    snapshot_name: str | None
    snapshot_id: str | None
    incremental_base: str | None
    is_incremental: bool
    include_intermediate: bool
    rollback_to_base: bool
    estimated_size: int | None
    priority: int
    sequence: int
    source_ssh_hostname: str | None
    source_ssh_user: str | None
    source_ssh_port: int
    pipeline: list[list[str]]
    sync_command: str | None = None
    reason: str | None = None


class Instructions(OutModel):
    system_id: str
    timestamp: datetime
    action_count: int
    sync_groups: list[str]
    actions: list[ActionOut]


class ClaimStatus(StrEnum):
    SYNCING = "syncing"
    IN_SYNC = "in_sync"
    ERROR = "error"


class StateReport(StrictModel):
    """An agent's report on one edge (the operations guide's body)."""

    sync_group_id: str = Field(max_length=36)
    system_id: str = Field(max_length=36)
    status: ClaimStatus
    snapshot_id: str | None = Field(None, max_length=36)
    dataset: LogicalDataset | None = None
    action_id: str | None = Field(None, max_length=64)
    error_message: str | None = Field(None, max_length=4000)
    bytes_transferred: int | None = Field(None, ge=0, le=2**63 - 1)
    duration_seconds: float | None = Field(None, ge=0, le=10**7)

    @model_validator(mode="after")
    def _one_dataset(self) -> StateReport:
        if self.snapshot_id is None and self.dataset is None:
            raise ValueError("send snapshot_id (the action's snapshot) or dataset (logical)")
        return self


class SyncStateOut(OutModel):
    id: str
    sync_group_id: str
    dataset: str
    system_id: str = Field(description="The target system of this edge.")
    target_system_id: str
    source_system_id: str | None
    status: str
    source_dataset: str | None
    target_dataset: str | None
    latest_snapshot: str | None
    lag_seconds: int
    late: bool
    reason: str | None
    error_message: str | None
    last_sync: datetime | None
    last_check: datetime | None
    last_transfer_bytes: int | None
    last_transfer_seconds: float | None


class StatusSystem(OutModel):
    system_id: str
    hostname: str
    latest_snapshot: str | None
    status: str
    lag_seconds: int
    late: bool
    reason: str | None


class StatusDataset(OutModel):
    dataset: str
    source_system_id: str | None
    systems: list[StatusSystem]


class GroupStatus(OutModel):
    sync_group_id: str
    name: str
    enabled: bool
    total_states: int
    status_breakdown: dict[str, int]
    in_sync_count: int
    out_of_sync_count: int
    syncing_count: int
    conflict_count: int
    error_count: int
    late_count: int
    pending_actions: int
    open_conflicts: int
    reason: str | None
    last_updated: datetime
    datasets: list[StatusDataset]


class ConflictOut(OutModel):
    id: str
    sync_group_id: str
    dataset: str
    target_system_id: str
    source_system_id: str | None
    type: str
    status: str
    details: dict[str, Any]
    resolution: str | None
    note: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    detected_at: datetime
    updated_at: datetime


class Strategy(StrEnum):
    ROLLBACK_TARGET = "rollback_target"
    RENAME_TARGET_ASIDE = "rename_target_aside"
    IGNORE = "ignore"
    MANUAL = "manual"


class ResolveIn(StrictModel):
    strategy: Strategy
    note: str | None = Field(None, max_length=2000)


class ProtectedOut(OutModel):
    system_id: str
    dataset: str
    snapshot: str
    snapshot_id: str | None
    reason: str
    sync_group_id: str
    peer_system_id: str


class ProtectedList(OutModel):
    system_id: str
    count: int
    snapshots: list[ProtectedOut]
