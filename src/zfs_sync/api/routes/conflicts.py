from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from zfs_sync.api.auth import PrincipalDep, check_admin
from zfs_sync.api.deps import DbDep, Limit, NowDep, Offset, ReadAccess, SettingsDep
from zfs_sync.api.routes.common import (
    COMMON_ERRORS,
    OrjsonRoute,
    doc,
    error_responses,
    set_total,
    translate_not_found,
)
from zfs_sync.api.routes.sync import refresh_after_change
from zfs_sync.api.schemas.sync import ConflictOut, ResolveIn
from zfs_sync.storage import sync_states as store
from zfs_sync.storage.models import SyncGroup

router = APIRouter(
    prefix="/conflicts", tags=["conflicts"], responses=COMMON_ERRORS, route_class=OrjsonRoute
)


@router.get(
    "",
    response_model=list[ConflictOut],
    dependencies=[ReadAccess],
    description=doc("read", "Conflicts, newest first: `open`, `resolved`, `ignored` or `cleared`."),
)
def list_conflicts(
    response: Response,
    db: DbDep,
    sync_group_id: Annotated[str | None, Query(max_length=36)] = None,
    status: Annotated[str | None, Query(pattern="^(open|resolved|ignored|cleared)$")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[ConflictOut]:
    with db.read() as session:
        rows = store.list_conflicts(session, sync_group_id, status)
        set_total(response, len(rows))
        return [ConflictOut.model_validate(r) for r in rows[offset : offset + limit]]


@router.get(
    "/{conflict_id}",
    responses=error_responses(404),
    response_model=ConflictOut,
    dependencies=[ReadAccess],
    description=doc(
        "read",
        "One conflict, with what each side has and what a resolution "
        "would discard (`details.would_discard`, `details.rename_to`).",
    ),
)
def get_conflict(conflict_id: str, db: DbDep) -> ConflictOut:
    with db.read() as session, translate_not_found():
        return ConflictOut.model_validate(store.get_conflict(session, conflict_id))


@router.post(
    "/{conflict_id}/resolve",
    responses=error_responses(403, 404, 413),
    response_model=ConflictOut,
    description=doc(
        "group_admin",
        "Decide a conflict. `rollback_target`: the target is rolled back to the common base, "
        "discarding exactly the snapshots in `details.would_discard` (if it gains others, the "
        "conflict reopens). `rename_target_aside`: the target's dataset is renamed to "
        "`details.rename_to` and received anew (nothing destroyed). `ignore`: no action, "
        "the conflict is marked ignored. `manual`: you fix it by hand; no action.",
    ),
)
def resolve(
    conflict_id: str,
    body: ResolveIn,
    principal: PrincipalDep,
    db: DbDep,
    settings: SettingsDep,
    now: NowDep,
) -> ConflictOut:
    check_admin(principal, settings.open_admin, "resolve conflicts")
    who = "admin" if principal.is_admin else "anonymous (open admin)"
    with db.write() as session, translate_not_found():
        row = store.get_conflict(session, conflict_id)
        group = session.get(SyncGroup, row.sync_group_id)
        store.resolve_conflict(
            session,
            conflict_id,
            body.strategy.value,
            body.note,
            who,
            now,
            group.name if group else row.sync_group_id,
        )
        group_id = row.sync_group_id
    refresh_after_change(db, settings, now, group_ids=[group_id])
    with db.read() as session:
        return ConflictOut.model_validate(store.get_conflict(session, conflict_id))
