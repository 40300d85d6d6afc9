"""Sync states and conflicts as stored: agents' claims, last derived status, conflict lifecycle.

The planner derives states afresh on every read; what is stored here is what facts cannot
show (claims, resolutions) and what the event log needs (the last status and the open
conflicts, so that each change is written once). ``persist_plans`` runs after every change of
the planner's inputs (reports, claims, group changes, resolutions) and on ``check``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from zfs_sync.domain.plan_types import Conflict, EdgeState, GroupPlan, SnapshotRef, SyncStatus
from zfs_sync.storage import revision
from zfs_sync.storage.common import NotFound
from zfs_sync.storage.events import record_event
from zfs_sync.storage.models import ConflictRecord, SyncGroup, SyncState, System

_NAMESPACE = uuid.UUID("6f1c2a3e-5b7d-4f8e-9a0b-1c2d3e4f5a6b")

OPEN, RESOLVED, IGNORED, CLEARED = "open", "resolved", "ignored", "cleared"


def state_id(group_id: str, dataset: str, target_system_id: str) -> str:
    """Deterministic, so a freshly derived state and its stored row share one id."""
    return str(uuid.uuid5(_NAMESPACE, f"state|{group_id}|{dataset}|{target_system_id}"))


def conflict_id(group_id: str, dataset: str, target_system_id: str, type_: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"conflict|{group_id}|{dataset}|{target_system_id}|{type_}"))


def get_state_row(session: Session, ident: str) -> SyncState:
    row = session.get(SyncState, ident)
    if row is None:
        raise NotFound("sync_state", ident)
    return row


def _state_row(
    session: Session, group_id: str, dataset: str, target: str, now: datetime
) -> SyncState:
    ident = state_id(group_id, dataset, target)
    row = session.get(SyncState, ident)
    if row is None:
        row = SyncState(
            id=ident,
            sync_group_id=group_id,
            dataset=dataset,
            target_system_id=target,
            updated_at=now,
        )
        session.add(row)
    return row


def record_claim(
    session: Session,
    group_id: str,
    dataset: str,
    target_system_id: str,
    *,
    status: SyncStatus,
    now: datetime,
    snapshot: SnapshotRef | None,
    target_newest: SnapshotRef | None,
    last_sync: datetime | None,
    action_id: str | None = None,
    error_message: str | None = None,
    bytes_transferred: int | None = None,
    duration_seconds: float | None = None,
) -> SyncState:
    """Store an agent's report for an edge (it replaces the previous claim)."""
    row = _state_row(session, group_id, dataset, target_system_id, now)
    row.last_sync = last_sync
    row.claim_status = status.value
    row.claim_at = now
    row.claim_error = error_message if status is SyncStatus.ERROR else None
    row.claim_snapshot_name = snapshot.name if snapshot else None
    row.claim_snapshot_guid = snapshot.guid if snapshot else None
    row.claim_target_newest_name = target_newest.name if target_newest else None
    row.claim_target_newest_guid = target_newest.guid if target_newest else None
    row.claim_action_id = action_id
    if bytes_transferred is not None:
        row.last_transfer_bytes = bytes_transferred
    if duration_seconds is not None:
        row.last_transfer_seconds = duration_seconds
    row.updated_at = now
    session.flush()
    return row


def persist_plans(session: Session, plans: Sequence[GroupPlan], now: datetime) -> None:
    """Remember each edge's derived status and each conflict; log every change once."""
    ids = {s.target_system_id for p in plans for s in p.states}
    names = dict(
        session.execute(select(System.id, System.hostname).where(System.id.in_(ids))).all()
    )
    for plan in plans:
        _lock_group(session, plan.group.id)
        rows = {
            (r.dataset, r.target_system_id): r
            for r in session.scalars(
                select(SyncState).where(SyncState.sync_group_id == plan.group.id)
            )
        }
        for state in plan.states:
            row = rows.get((state.dataset, state.target_system_id))
            if row is None:
                row = _state_row(session, plan.group.id, state.dataset, state.target_system_id, now)
            _update_state(session, plan, row, state, names, now)
        _sync_conflicts(session, plan, now)


def _lock_group(session: Session, group_id: str) -> None:
    # Serialises concurrent refreshes of one group on PostgreSQL (SQLite writers are serial).
    session.execute(select(SyncGroup.id).where(SyncGroup.id == group_id).with_for_update())


def _update_state(
    session: Session,
    plan: GroupPlan,
    row: SyncState,
    state: EdgeState,
    names: dict[str, str],
    now: datetime,
) -> None:
    row.last_check = now
    # last_sync and the claim are plan inputs (``to_prior``); status, reason and the times
    # of checks are not.
    if state.last_sync is not None and (row.last_sync is None or state.last_sync > row.last_sync):
        row.last_sync = state.last_sync
        revision.inputs_changed(session)
    if row.claim_at is not None and state.last_sync is not None and state.last_sync >= row.claim_at:
        _fold_claim(row)
        revision.inputs_changed(session)
    if row.status == state.status.value and row.reason == state.reason:
        return
    previous = row.status
    row.status, row.reason, row.updated_at = state.status.value, state.reason, now
    if previous == state.status.value:
        return  # only the reason changed: not worth an event
    severity = {"error": "error", "conflict": "warning"}.get(state.status.value, "info")
    what = (
        f": {state.error_message or state.reason}" if (state.error_message or state.reason) else ""
    )
    host = names.get(state.target_system_id, state.target_system_id)
    record_event(
        session,
        f"sync.{state.status.value}",
        f"{plan.group.name}: {state.dataset} on {host} is "
        f"{state.status.value.replace('_', ' ')}{what}",
        system_id=state.target_system_id,
        sync_group_id=plan.group.id,
        severity=severity,
        data={
            "dataset": state.dataset,
            "previous": previous,
            "status": state.status.value,
            "source_system_id": state.source_system_id,
            "lag_seconds": state.lag_seconds,
            "state_id": row.id,
        },
        now=now,
    )


def _fold_claim(row: SyncState) -> None:
    """A claim whose snapshot has arrived has done its work (it is now ``last_sync``).

    Dropping it keeps later plans from looking for that snapshot, which soon falls out of
    the window of newest snapshots the planner is given.
    """
    row.claim_status = row.claim_error = row.claim_action_id = None
    row.claim_at = None
    row.claim_snapshot_name = row.claim_target_newest_name = None
    row.claim_snapshot_guid = row.claim_target_newest_guid = None


def _sync_conflicts(session: Session, plan: GroupPlan, now: datetime) -> None:
    stored = {
        r.id: r
        for r in session.scalars(
            select(ConflictRecord).where(ConflictRecord.sync_group_id == plan.group.id)
        )
    }
    seen: set[str] = set()
    for conflict in plan.conflicts:
        ident = conflict_id(
            plan.group.id, conflict.dataset, conflict.target_system_id, conflict.conflict_type.value
        )
        seen.add(ident)
        _upsert_conflict(session, plan, stored.get(ident), ident, conflict, now)
    for ident, row in stored.items():
        if ident in seen:
            continue
        if row.status == OPEN:
            row.status, row.updated_at = CLEARED, now
            _conflict_event(
                session,
                plan,
                row,
                "conflict.cleared",
                "no longer shown by the reported snapshots",
                now,
            )
        elif row.resolution is not None and not row.applied:
            row.applied, row.updated_at = True, now  # carried out: it steers nothing more
            revision.inputs_changed(session)


def _upsert_conflict(
    session: Session,
    plan: GroupPlan,
    row: ConflictRecord | None,
    ident: str,
    conflict: Conflict,
    now: datetime,
) -> None:
    details: dict[str, Any] = conflict.details.as_dict()
    if row is None:
        row = ConflictRecord(
            id=ident,
            sync_group_id=plan.group.id,
            dataset=conflict.dataset,
            target_system_id=conflict.target_system_id,
            type=conflict.conflict_type.value,
            source_system_id=conflict.source_system_id,
            details=details,
            status=OPEN,
            allowed_discard=[],
            detected_at=now,
            updated_at=now,
        )
        session.add(row)
        _conflict_event(session, plan, row, "conflict.detected", details["message"], now)
        return
    row.details = details
    row.source_system_id = conflict.source_system_id
    if row.applied or row.status == CLEARED or (row.status == RESOLVED and conflict.reopened):
        reopened = row.status == RESOLVED and not row.applied
        if row.resolution is not None and not row.applied:
            revision.inputs_changed(session)  # a resolution that steered plans is dropped
        row.status, row.detected_at, row.updated_at = OPEN, now, now
        row.resolution, row.resolved_at, row.resolved_by = None, None, None
        row.allowed_discard, row.applied = [], False
        _conflict_event(
            session,
            plan,
            row,
            "conflict.reopened" if reopened else "conflict.detected",
            details["message"],
            now,
        )


def _conflict_event(
    session: Session, plan: GroupPlan, row: ConflictRecord, type_: str, message: str, now: datetime
) -> None:
    record_event(
        session,
        type_,
        f"{plan.group.name}: {row.type.replace('_', ' ')} on {row.dataset} "
        f"(target {row.target_system_id}): {message}",
        system_id=row.target_system_id,
        sync_group_id=plan.group.id,
        severity="warning" if type_ != "conflict.cleared" else "info",
        data={"conflict_id": row.id, "dataset": row.dataset, "type": row.type},
        now=now,
    )


def list_conflicts(
    session: Session, group_id: str | None, status: str | None
) -> list[ConflictRecord]:
    query = select(ConflictRecord)
    if group_id:
        query = query.where(ConflictRecord.sync_group_id == group_id)
    if status:
        query = query.where(ConflictRecord.status == status)
    return list(
        session.scalars(query.order_by(ConflictRecord.detected_at.desc(), ConflictRecord.id))
    )


def get_conflict(session: Session, ident: str) -> ConflictRecord:
    row = session.get(ConflictRecord, ident)
    if row is None:
        raise NotFound("conflict", ident)
    return row


def resolve_conflict(
    session: Session,
    ident: str,
    strategy: str,
    note: str | None,
    who: str,
    now: datetime,
    group_name: str,
) -> ConflictRecord:
    """Record an admin's decision. rollback_target allows discarding exactly the snapshots the
    conflict listed when it was resolved; anything newer reopens it."""
    row = get_conflict(session, ident)
    row.resolution = strategy
    row.note = note
    row.resolved_by = who
    row.resolved_at = now
    row.updated_at = now
    row.applied = False
    row.status = IGNORED if strategy == "ignore" else RESOLVED
    row.allowed_discard = (
        list(row.details.get("would_discard") or []) if strategy == "rollback_target" else []
    )
    discard = ", ".join(item["name"] for item in row.allowed_discard) or "nothing"
    record_event(
        session,
        "conflict.resolved",
        f"{group_name}: {row.type.replace('_', ' ')} on {row.dataset} resolved with {strategy} "
        f"by {who}" + (f" (allows discarding {discard})" if strategy == "rollback_target" else ""),
        system_id=row.target_system_id,
        sync_group_id=row.sync_group_id,
        severity="warning" if strategy in ("rollback_target", "rename_target_aside") else "info",
        data={
            "conflict_id": row.id,
            "strategy": strategy,
            "note": note,
            "allowed_discard": row.allowed_discard,
        },
        now=now,
    )
    return row


def states_by_id(plans: Iterable[GroupPlan]) -> dict[str, EdgeState]:
    return {
        state_id(s.sync_group_id, s.dataset, s.target_system_id): s for p in plans for s in p.states
    }
