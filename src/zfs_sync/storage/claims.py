"""Agents' state reports (``POST /sync/states``): which edge they are about, and storing them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from zfs_sync.domain.names import join_dataset, logical_dataset
from zfs_sync.domain.plan_types import SnapshotRef, SyncStatus
from zfs_sync.storage.models import Dataset, GroupMember, Snapshot, SyncGroup, SyncState, System
from zfs_sync.storage.sync_states import record_claim, state_id


class ClaimError(Exception):
    def __init__(self, status: int, code: str, detail: str, hint: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.hint = status, code, detail, hint


@dataclass(frozen=True)
class Edge:
    group_id: str
    dataset: str  # logical
    target_system_id: str
    target_dataset: str | None
    snapshot: SnapshotRef | None


def _root(session: Session, member: GroupMember) -> str | None:
    if member.root:
        return member.root
    pools = set(
        session.scalars(
            select(Dataset.pool).where(
                Dataset.system_id == member.system_id, Dataset.snapshot_count > 0
            )
        )
    )
    return pools.pop() if len(pools) == 1 else None


def resolve_edge(
    session: Session,
    group_id: str,
    system_id: str,
    snapshot_id: str | None,
    dataset: str | None,
    status: str = "in_sync",
) -> Edge:
    """The (group, logical dataset, target) a report is about, or a ClaimError saying why not."""
    if session.get(System, system_id) is None:
        raise ClaimError(
            404, "E_SYSTEM_NOT_FOUND", f"No system with id {system_id!r}.",
            "List the systems with GET /api/v1/systems.",
        )
    if session.get(SyncGroup, group_id) is None:
        raise ClaimError(
            404,
            "E_SYNC_GROUP_NOT_FOUND",
            f"No sync group with id {group_id!r}.",
            "List the groups with GET /api/v1/sync-groups.",
        )
    members = {
        m.system_id: m
        for m in session.scalars(select(GroupMember).where(GroupMember.group_id == group_id))
    }
    if system_id not in members:
        raise ClaimError(
            422,
            "E_NOT_A_MEMBER",
            f"System {system_id} is not a member of sync group {group_id}.",
            "Report states only for groups the system belongs to.",
        )
    snapshot_ref = None
    if snapshot_id is not None:
        snap = session.get(Snapshot, snapshot_id)
        if snap is None:
            raise ClaimError(
                404,
                "E_SNAPSHOT_NOT_FOUND",
                f"No snapshot with id {snapshot_id!r}.",
                "Send the snapshot_id of the action you carried out.",
            )
        owner = members.get(snap.system_id)
        root = _root(session, owner) if owner else None
        logical = logical_dataset(snap.dataset, root) if root else None
        if owner is None or not logical:
            raise ClaimError(
                422,
                "E_SNAPSHOT_NOT_IN_GROUP",
                f"Snapshot {snapshot_id} ({snap.dataset}@{snap.name}) is not in a "
                "dataset of this sync group.",
                "Send the snapshot_id from the action, or the logical dataset.",
            )
        dataset = logical
        # One of the target's own snapshots names the dataset; only for in_sync does it also
        # say what the target holds. An error or syncing report names no delivered snapshot.
        if snap.system_id != system_id or status == "in_sync":
            snapshot_ref = SnapshotRef(snap.name, snap.guid)
    assert dataset is not None
    target_root = _root(session, members[system_id])
    target_dataset = join_dataset(target_root, dataset) if target_root else None
    return Edge(group_id, dataset, system_id, target_dataset, snapshot_ref)


def _newest(session: Session, system_id: str, dataset: str | None) -> SnapshotRef | None:
    if dataset is None:
        return None
    row = session.execute(
        select(Snapshot.name, Snapshot.guid)
        .where(Snapshot.system_id == system_id, Snapshot.dataset == dataset)
        .order_by(Snapshot.timestamp.desc(), Snapshot.createtxg.desc())
        .limit(1)
    ).first()
    return SnapshotRef(row[0], row[1]) if row else None


def _holds(session: Session, system_id: str, dataset: str | None, ref: SnapshotRef) -> bool:
    if dataset is None:
        return False
    match = Snapshot.name == ref.name
    if ref.guid is not None:
        match = or_(
            Snapshot.guid == ref.guid, (Snapshot.name == ref.name) & Snapshot.guid.is_(None)
        )
    query = select(Snapshot.id).where(
        Snapshot.system_id == system_id, Snapshot.dataset == dataset, match
    )
    return session.execute(query.limit(1)).first() is not None


def _carried_last_sync(session: Session, edge: Edge) -> datetime | None:
    """The last successful sync, including the claim about to be replaced if it succeeded."""
    row = session.get(SyncState, state_id(edge.group_id, edge.dataset, edge.target_system_id))
    if row is None:
        return None
    success = row.last_sync
    if (
        row.claim_snapshot_name
        and row.claim_at
        and _holds(
            session,
            edge.target_system_id,
            edge.target_dataset,
            SnapshotRef(row.claim_snapshot_name, row.claim_snapshot_guid),
        )
    ):
        success = row.claim_at if success is None else max(success, row.claim_at)
    return success


def record(session: Session, edge: Edge, report: dict[str, Any], now: datetime) -> SyncState:
    return record_claim(
        session,
        edge.group_id,
        edge.dataset,
        edge.target_system_id,
        status=SyncStatus(report["status"]),
        now=now,
        snapshot=edge.snapshot,
        target_newest=_newest(session, edge.target_system_id, edge.target_dataset),
        last_sync=_carried_last_sync(session, edge),
        action_id=report.get("action_id"),
        error_message=report.get("error_message"),
        bytes_transferred=report.get("bytes_transferred"),
        duration_seconds=report.get("duration_seconds"),
    )
