"""Sync: instructions, state reports, states, group status and checks (DESIGN.md §7-8)."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from zfs_sync import planning
from zfs_sync.api.auth import PrincipalDep, check_admin, check_own
from zfs_sync.api.deps import DbDep, Limit, NowDep, Offset, ReadAccess, SettingsDep
from zfs_sync.api.errors import ApiError, not_found
from zfs_sync.api.routes.common import (
    COMMON_ERRORS,
    OrjsonRoute,
    doc,
    error_responses,
    set_total,
    translate_not_found,
)
from zfs_sync.api.schemas.sync import (
    ActionOut,
    GroupStatus,
    Instructions,
    StateReport,
    StatusDataset,
    StatusSystem,
    SyncStateOut,
)
from zfs_sync.config import Settings
from zfs_sync.domain.plan_types import EdgeState, GroupPlan, SnapshotRef, SyncStatus
from zfs_sync.storage import claims
from zfs_sync.storage import sync_states as store
from zfs_sync.storage.db import Database
from zfs_sync.storage.models import Dataset, SyncGroup, SyncState, System

log = logging.getLogger(__name__)
router = APIRouter(
    prefix="/sync", tags=["sync"], responses=COMMON_ERRORS, route_class=OrjsonRoute
)


def refresh_after_change(
    db: Database,
    settings: Settings,
    now: datetime,
    *,
    system_id: str | None = None,
    group_ids: list[str] | None = None,
) -> None:
    """Re-plan what a write changed, so states, conflicts and events follow at once.

    The write itself is already committed: a failure here is logged, never turned into a
    failed report (the next change or check refreshes again).
    """
    try:
        # Plan in a read session first: the write below finds the plans cached and holds
        # the writer (on SQLite, every other writer waits) only to store what changed.
        with db.read() as session:
            planning.plans_for_groups(session, _changed(session, system_id, group_ids),
                                      settings, now)
        with db.write(plan_neutral=True) as session:
            ids = _changed(session, system_id, group_ids)
            if ids:
                planning.refresh(session, ids, settings, now)
    except Exception:  # noqa: BLE001 - see docstring
        log.exception(
            "re-planning after a change failed (groups %s, system %s)", group_ids, system_id
        )


def _changed(session: Session, system_id: str | None, group_ids: list[str] | None) -> list[str]:
    ids = list(group_ids or [])
    if system_id is not None:
        ids += planning.groups_of_system(session, system_id)
    return sorted(set(ids))


def _action(action: object, include_commands: bool) -> ActionOut:
    out = ActionOut.model_validate(action)
    out.pipeline = [list(stage) for stage in action.pipeline]  # type: ignore[attr-defined]
    if not include_commands:
        out.sync_command = None
    return out


@router.get(
    "/instructions/{system_id}",
    responses=error_responses(403, 404),
    response_model=Instructions,
    description=doc(
        "own",
        "What this system must pull now, in run order (it is the target of every action). "
        "`include_commands=true` adds each action's one-line `sync_command`.",
    ),
)
def instructions(
    system_id: str,
    principal: PrincipalDep,
    db: DbDep,
    settings: SettingsDep,
    now: NowDep,
    include_commands: bool = False,
    sync_group_id: Annotated[str | None, Query(max_length=36)] = None,
) -> Instructions:
    check_own(principal, system_id)
    with db.read() as session:
        if session.get(System, system_id) is None:
            raise not_found("system", system_id)
        if sync_group_id is not None and session.get(SyncGroup, sync_group_id) is None:
            raise not_found("sync_group", sync_group_id)
        plans = planning.plans_for_target(session, system_id, settings, now, sync_group_id)
    actions = [_action(a, include_commands) for p in plans for a in p.actions_for(system_id)]
    return Instructions(
        system_id=system_id,
        timestamp=now,
        action_count=len(actions),
        sync_groups=[p.group.id for p in plans],
        actions=actions,
    )


def _state_out(state: EdgeState, row: SyncState | None) -> SyncStateOut:
    return SyncStateOut(
        id=store.state_id(state.sync_group_id, state.dataset, state.target_system_id),
        sync_group_id=state.sync_group_id,
        dataset=state.dataset,
        system_id=state.target_system_id,
        target_system_id=state.target_system_id,
        source_system_id=state.source_system_id,
        status=state.status.value,
        source_dataset=state.source_dataset,
        target_dataset=state.target_dataset,
        latest_snapshot=state.latest_snapshot,
        lag_seconds=state.lag_seconds,
        late=state.late,
        reason=state.reason,
        error_message=state.error_message,
        last_sync=state.last_sync,
        last_check=row.last_check if row else None,
        last_transfer_bytes=state.last_transfer_bytes,
        last_transfer_seconds=state.last_transfer_seconds,
    )


@router.post(
    "/states",
    responses=error_responses(403, 404, 413),
    response_model=SyncStateOut,
    description=doc(
        "own",
        "An agent's report on one edge: `syncing` before a transfer, `in_sync` or `error` "
        "after. `snapshot_id` (the action's snapshot, or one of the target's) or `dataset` "
        "(logical) says which dataset. The report is a claim: states are derived from the "
        "reported snapshots, and a claim adds what they cannot show.",
    ),
)
def report_state(
    body: StateReport, principal: PrincipalDep, db: DbDep, settings: SettingsDep, now: NowDep
) -> SyncStateOut:
    check_own(principal, body.system_id)
    with db.write() as session:
        try:
            edge = claims.resolve_edge(
                session,
                body.sync_group_id,
                body.system_id,
                body.snapshot_id,
                body.dataset,
                body.status.value,
            )
        except claims.ClaimError as exc:
            raise ApiError(exc.status, exc.code, exc.detail, exc.hint) from None
        claims.record(session, edge, body.model_dump(), now)
    refresh_after_change(db, settings, now, group_ids=[body.sync_group_id])
    with db.read() as session:
        plans = planning.plans_for_groups(session, [body.sync_group_id], settings, now)
        row = session.get(
            SyncState, store.state_id(body.sync_group_id, edge.dataset, body.system_id)
        )
    state = store.states_by_id(plans).get(
        store.state_id(body.sync_group_id, edge.dataset, body.system_id)
    )
    if state is None:
        raise ApiError(
            422,
            "E_NOT_AN_EDGE",
            f"{edge.dataset} on system {body.system_id} is not an edge of this group's plan.",
            "Check the group's datasets filter and the member's root; the source of a "
            "dataset reports no state for it.",
        )
    return _state_out(state, row)


@router.get(
    "/states",
    response_model=list[SyncStateOut],
    dependencies=[ReadAccess],
    description=doc("read", "Current sync states (one per group, logical dataset and target)."),
)
def list_states(
    response: Response,
    db: DbDep,
    settings: SettingsDep,
    now: NowDep,
    sync_group_id: Annotated[str | None, Query(max_length=36)] = None,
    system_id: Annotated[str | None, Query(max_length=36)] = None,
    status: Annotated[SyncStatus | None, Query()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[SyncStateOut]:
    with db.read() as session:
        group_ids = (
            [sync_group_id] if sync_group_id else list(session.scalars(select(SyncGroup.id)))
        )
        plans = planning.plans_for_groups(session, group_ids, settings, now)
        rows = {
            r.id: r
            for r in session.scalars(
                select(SyncState).where(SyncState.sync_group_id.in_(group_ids))
            )
        }
    states = [
        s
        for p in plans
        for s in p.states
        if (system_id is None or s.target_system_id == system_id)
        and (status is None or s.status == status)
    ]
    set_total(response, len(states))
    page = states[offset : offset + limit]
    return [
        _state_out(s, rows.get(store.state_id(s.sync_group_id, s.dataset, s.target_system_id)))
        for s in page
    ]


@router.get(
    "/states/{state_id}",
    responses=error_responses(404),
    response_model=SyncStateOut,
    dependencies=[ReadAccess],
    description=doc("read", "One sync state."),
)
def get_state(state_id: str, db: DbDep, settings: SettingsDep, now: NowDep) -> SyncStateOut:
    with db.read() as session, translate_not_found():
        row = store.get_state_row(session, state_id)
        plans = planning.plans_for_groups(session, [row.sync_group_id], settings, now)
    state = store.states_by_id(plans).get(state_id)
    if state is None:
        raise not_found("sync_state", state_id, "The edge no longer exists in its group's plan.")
    return _state_out(state, row)


def group_status(
    plan: GroupPlan,
    hostnames: dict[str, str],
    sources: dict[tuple[str, str], str | None],
    open_conflicts: int,
    now: datetime,
) -> GroupStatus:
    counts = Counter(s.status.value for s in plan.states)
    by_dataset: dict[str, list[EdgeState]] = {}
    for state in plan.states:
        by_dataset.setdefault(state.dataset, []).append(state)
    datasets = []
    for dataset in sorted(by_dataset, key=lambda d: tuple(d.split("/"))):
        states = by_dataset[dataset]
        source = next((s.source_system_id for s in states if s.source_system_id), None)
        systems = []
        if source is not None:
            systems.append(
                StatusSystem(
                    system_id=source,
                    hostname=hostnames.get(source, source),
                    latest_snapshot=sources.get((source, states[0].source_dataset or "")),
                    status="source",
                    lag_seconds=0,
                    late=False,
                    reason=None,
                )
            )
        systems += [
            StatusSystem(
                system_id=s.target_system_id,
                hostname=hostnames.get(s.target_system_id, s.target_system_id),
                latest_snapshot=s.latest_snapshot,
                status=s.status.value,
                lag_seconds=s.lag_seconds,
                late=s.late,
                reason=s.reason,
            )
            for s in sorted(states, key=lambda s: hostnames.get(s.target_system_id, ""))
        ]
        datasets.append(StatusDataset(dataset=dataset, source_system_id=source, systems=systems))
    return GroupStatus(
        sync_group_id=plan.group.id,
        name=plan.group.name,
        enabled=plan.group.enabled,
        total_states=len(plan.states),
        status_breakdown=dict(sorted(counts.items())),
        in_sync_count=counts["in_sync"],
        out_of_sync_count=counts["out_of_sync"],
        syncing_count=counts["syncing"],
        conflict_count=counts["conflict"],
        error_count=counts["error"],
        late_count=sum(1 for s in plan.states if s.late),
        pending_actions=len(plan.actions),
        open_conflicts=open_conflicts,
        reason=plan.reason,
        last_updated=now,
        datasets=datasets,
    )


def load_status(session: object, group_id: str, settings: Settings, now: datetime) -> GroupStatus:
    from sqlalchemy.orm import Session

    assert isinstance(session, Session)
    if session.get(SyncGroup, group_id) is None:
        raise not_found("sync_group", group_id)
    plans = planning.plans_for_groups(session, [group_id], settings, now)
    plan = plans[0]
    member_ids = {s.target_system_id for s in plan.states} | {
        s.source_system_id for s in plan.states if s.source_system_id
    }
    hostnames = dict(
        session.execute(select(System.id, System.hostname).where(System.id.in_(member_ids))).all()
    )
    pairs = {
        (s.source_system_id, s.source_dataset)
        for s in plan.states
        if s.source_system_id and s.source_dataset
    }
    sources: dict[tuple[str, str], str | None] = {}
    if pairs:
        rows = session.execute(
            select(Dataset.system_id, Dataset.name, Dataset.newest_name).where(
                Dataset.system_id.in_({p[0] for p in pairs})
            )
        )
        sources = {(sid, name): newest for sid, name, newest in rows if (sid, name) in pairs}
    open_conflicts = len(store.list_conflicts(session, group_id, store.OPEN))
    return group_status(plan, hostnames, sources, open_conflicts, now)


@router.get(
    "/groups/{group_id}/status",
    responses=error_responses(404),
    response_model=GroupStatus,
    dependencies=[ReadAccess],
    description=doc(
        "read",
        "Counts by status, and per logical dataset each host's newest snapshot, status and lag "
        "(the source is listed with status `source`).",
    ),
)
def get_group_status(group_id: str, db: DbDep, settings: SettingsDep, now: NowDep) -> GroupStatus:
    with db.read() as session:
        return load_status(session, group_id, settings, now)


@router.post(
    "/groups/{group_id}/check",
    responses=error_responses(403, 404),
    response_model=GroupStatus,
    description=doc(
        "group_admin",
        "Re-plan the group now, record state changes and conflicts, and return its status.",
    ),
)
def check_group(
    group_id: str, principal: PrincipalDep, db: DbDep, settings: SettingsDep, now: NowDep
) -> GroupStatus:
    check_admin(principal, settings.open_admin, "check sync groups")
    with db.read() as session:
        if session.get(SyncGroup, group_id) is None:
            raise not_found("sync_group", group_id)
        planning.plans_for_groups(session, [group_id], settings, now)  # outside the writer
    with db.write(plan_neutral=True) as session:
        planning.refresh(session, [group_id], settings, now)
    with db.read() as session:
        return load_status(session, group_id, settings, now)


__all__ = ["SnapshotRef", "refresh_after_change", "router"]
