"""The retention guard: snapshots that pruning must not destroy (DESIGN.md section 8).

For every replication edge its base is protected on both sides (losing it forces a full
resend), and while the target is behind, the snapshots the source still owes it are protected
on the source. Owed protection lapses once a snapshot is older than ``max_protect_seconds``,
so a dead target cannot block pruning forever. Read by
``GET /systems/{id}/protected-snapshots`` and the agent's ``may-destroy`` hook.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from zfs_sync.domain.plan_types import GroupPlan, ReplicationEdge, SnapshotFact

DEFAULT_MAX_PROTECT_SECONDS = 30 * 24 * 3600


class ProtectionReason(StrEnum):
    BASE = "base"  # the common snapshot of an edge
    OWED = "owed"  # the source still has to send it to a target that is behind


@dataclass(frozen=True)
class ProtectedSnapshot:
    system_id: str
    dataset: str  # full name on that system
    snapshot: str
    snapshot_id: str | None
    reason: ProtectionReason
    sync_group_id: str
    peer_system_id: str  # the other end of the edge


def _protect(
    system_id: str,
    dataset: str,
    snap: SnapshotFact,
    reason: ProtectionReason,
    edge: ReplicationEdge,
    peer: str,
) -> ProtectedSnapshot:
    return ProtectedSnapshot(
        system_id, dataset, snap.name, snap.id or None, reason, edge.sync_group_id, peer
    )


def edge_protections(
    edge: ReplicationEdge, now: datetime, max_protect_seconds: int
) -> list[ProtectedSnapshot]:
    found = []
    if edge.base_on_source is not None:
        found.append(
            _protect(
                edge.source_system_id,
                edge.source_dataset,
                edge.base_on_source,
                ProtectionReason.BASE,
                edge,
                edge.target_system_id,
            )
        )
    if edge.base_on_target is not None:
        found.append(
            _protect(
                edge.target_system_id,
                edge.target_dataset,
                edge.base_on_target,
                ProtectionReason.BASE,
                edge,
                edge.source_system_id,
            )
        )
    horizon = now - timedelta(seconds=max_protect_seconds)
    found += [
        _protect(
            edge.source_system_id,
            edge.source_dataset,
            snap,
            ProtectionReason.OWED,
            edge,
            edge.target_system_id,
        )
        for snap in edge.owed
        if snap.timestamp >= horizon
    ]
    return found


def protected_snapshots(
    plans: Iterable[GroupPlan],
    now: datetime,
    system_id: str | None = None,
    max_protect_seconds: int = DEFAULT_MAX_PROTECT_SECONDS,
) -> tuple[ProtectedSnapshot, ...]:
    """Every protection from these plans (after ``apply_overlaps``), or one system's."""
    found = [
        p
        for plan in plans
        for edge in plan.edges
        for p in edge_protections(edge, now, max_protect_seconds)
    ]
    if system_id is not None:
        found = [p for p in found if p.system_id == system_id]
    return tuple(
        sorted(
            set(found),
            key=lambda p: (p.system_id, p.dataset, p.snapshot, p.reason, p.sync_group_id),
        )
    )


def may_destroy(
    protected: Iterable[ProtectedSnapshot], system_id: str, dataset: str, snapshot: str
) -> bool:
    """False when any edge protects ``dataset@snapshot`` on ``system_id``."""
    return not any(
        p.system_id == system_id and p.dataset == dataset and p.snapshot == snapshot
        for p in protected
    )
