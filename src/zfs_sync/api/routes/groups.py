"""Sync groups (`/sync-groups`): CRUD and membership (DESIGN.md §4, §7)."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Response
from sqlalchemy.orm import Session

from zfs_sync.api.deps import (
    DbDep,
    GroupAdminAccess,
    Limit,
    NowDep,
    Offset,
    ReadAccess,
    SettingsDep,
)
from zfs_sync.api.errors import ApiError
from zfs_sync.api.routes.common import (
    COMMON_ERRORS,
    OrjsonRoute,
    bad_request,
    doc,
    error_responses,
    set_total,
    translate_not_found,
)
from zfs_sync.api.routes.sync import refresh_after_change
from zfs_sync.api.schemas.groups import (
    GroupRuleError,
    GroupShape,
    MemberIn,
    MemberPublic,
    SyncGroupCreate,
    SyncGroupPublic,
    SyncGroupUpdate,
    check_group_shape,
)
from zfs_sync.storage import groups as store
from zfs_sync.storage.groups import GroupView, WantedMember

router = APIRouter(
    prefix="/sync-groups", tags=["sync groups"], responses=COMMON_ERRORS, route_class=OrjsonRoute
)


def to_public(view: GroupView) -> SyncGroupPublic:
    group = view.group
    return SyncGroupPublic(
        id=group.id,
        name=group.name,
        description=group.description,
        enabled=group.enabled,
        sync_interval_seconds=group.sync_interval_seconds,
        directional=group.directional,
        hub_system_id=group.hub_system_id,
        system_ids=view.system_ids,
        members=[
            MemberPublic(system_id=m.system_id, hostname=m.hostname, root=m.root)
            for m in view.members
        ],
        datasets=list(group.datasets or []),
        snapshot_pattern=group.snapshot_pattern,
        allow_rollback=group.allow_rollback,
        created_at=group.created_at,
        updated_at=group.updated_at,
    )


def _check_group(
    session: Session, directional: bool, hub: str | None, members: Sequence[WantedMember]
) -> None:
    """Unknown systems -> 404 naming the id; a broken directional setup -> 422 with a hint."""
    ids = [m.system_id for m in members]
    store.require_systems(session, ids + ([hub] if hub else []))
    try:
        check_group_shape(GroupShape(directional, hub, ids))
    except GroupRuleError as exc:
        raise bad_request(exc.code, exc.detail, exc.hint, ["body", exc.field]) from None


def _concurrent() -> ApiError:
    return ApiError(
        409,
        "E_CONCURRENT_CHANGE",
        "Another request changed this sync group or its systems at the same time; "
        "nothing was written.",
        "Send the request again: it is checked against the new state.",
    )


def _duplicate(exc: store.DuplicateGroupName) -> ApiError:
    return ApiError(
        409,
        "E_GROUP_EXISTS",
        f"A sync group named {exc.name!r} already exists (id {exc.group_id}).",
        f"Choose another name, or change that group with PUT /api/v1/sync-groups/{exc.group_id}.",
    )


@router.post(
    "",
    responses=error_responses(403, 404, 409, 413),
    status_code=201,
    response_model=SyncGroupPublic,
    dependencies=[GroupAdminAccess],
    description=doc(
        "group_admin",
        "Create a sync group. Give the members as `system_ids`, or as `members` "
        "(`[{system_id, root}]`, where `root` is the dataset the group's datasets live under on "
        "that host), not both. A directional group needs `hub_system_id`, one of its members.",
    ),
)
def create_group(
    body: SyncGroupCreate, db: DbDep, settings: SettingsDep, now: NowDep
) -> SyncGroupPublic:
    fields = body.fields()
    members = body.wanted_members({}) or []
    try:
        with db.write() as session, translate_not_found():
            _check_group(session, fields["directional"], fields["hub_system_id"], members)
            created = to_public(store.create_group(session, fields, members, now))
        refresh_after_change(db, settings, now, group_ids=[created.id])
        return created
    except store.DuplicateGroupName as exc:
        raise _duplicate(exc) from None
    except store.ConcurrentChange:
        raise _concurrent() from None


@router.get(
    "",
    response_model=list[SyncGroupPublic],
    dependencies=[ReadAccess],
    description=doc("read", "All sync groups by name; total in X-Total-Count."),
)
def list_groups(
    response: Response, db: DbDep, limit: Limit = 100, offset: Offset = 0
) -> list[SyncGroupPublic]:
    with db.read() as session:
        page = store.list_groups(session, limit, offset)
    set_total(response, page.total)
    return [to_public(view) for view in page.items]


@router.get(
    "/{group_id}",
    responses=error_responses(404),
    response_model=SyncGroupPublic,
    dependencies=[ReadAccess],
    description=doc("read", "One sync group with its members."),
)
def get_group(group_id: str, db: DbDep) -> SyncGroupPublic:
    with db.read() as session, translate_not_found():
        return to_public(store.get_group_view(session, group_id))


@router.put(
    "/{group_id}",
    responses=error_responses(403, 404, 409, 413),
    response_model=SyncGroupPublic,
    dependencies=[GroupAdminAccess],
    description=doc(
        "group_admin",
        "Partial update: only the fields sent change, and the resulting group is checked as a "
        "whole before anything is written. `system_ids` (or `members`) replaces the membership "
        "(with `system_ids`, members that stay keep their root); `directional: false` clears "
        "the hub.",
    ),
)
def update_group(
    group_id: str, body: SyncGroupUpdate, db: DbDep, settings: SettingsDep, now: NowDep
) -> SyncGroupPublic:
    fields = body.fields()
    try:
        with db.write() as session, translate_not_found():
            current = store.get_group_view(session, group_id)
            members = body.wanted_members(current.roots)
            _check_group(
                session,
                fields.get("directional", current.group.directional),
                fields.get("hub_system_id", current.group.hub_system_id),
                current.members if members is None else members,
            )
            updated = to_public(store.update_group(session, group_id, fields, members, now))
        refresh_after_change(db, settings, now, group_ids=[group_id])
        return updated
    except store.DuplicateGroupName as exc:
        raise _duplicate(exc) from None
    except store.ConcurrentChange:
        raise _concurrent() from None


@router.delete(
    "/{group_id}",
    responses=error_responses(403, 404),
    status_code=204,
    dependencies=[GroupAdminAccess],
    description=doc("group_admin", "Delete a sync group and its memberships (not the systems)."),
)
def delete_group(group_id: str, db: DbDep, now: NowDep) -> Response:
    with db.write() as session, translate_not_found():
        store.delete_group(session, group_id, now)
    return Response(status_code=204)


@router.post(
    "/{group_id}/systems",
    responses=error_responses(403, 404, 409, 413),
    status_code=201,
    response_model=SyncGroupPublic,
    dependencies=[GroupAdminAccess],
    description=doc(
        "group_admin",
        "Add one system to the group (`root` optional); returns the group. A system that is "
        "already a member: 409 (change a member's root with PUT and `members`).",
    ),
)
def add_member(
    group_id: str, body: MemberIn, db: DbDep, settings: SettingsDep, now: NowDep
) -> SyncGroupPublic:
    try:
        with db.write() as session, translate_not_found():
            group = to_public(store.add_member(session, group_id, body.system_id, body.root, now))
        refresh_after_change(db, settings, now, group_ids=[group_id])
        return group
    except store.ConcurrentChange:
        raise _concurrent() from None
    except store.AlreadyMember as exc:
        raise ApiError(
            409,
            "E_ALREADY_MEMBER",
            f"System {exc.system_id} is already a member of sync group {exc.group_name!r}.",
            f"To change its root, PUT /api/v1/sync-groups/{group_id} with the whole `members` "
            "list.",
        ) from None


@router.delete(
    "/{group_id}/systems/{system_id}",
    responses=error_responses(403, 404, 409),
    status_code=204,
    dependencies=[GroupAdminAccess],
    description=doc(
        "group_admin",
        "Remove one system from the group. The hub of a directional group: 409.",
    ),
)
def remove_member(
    group_id: str, system_id: str, db: DbDep, settings: SettingsDep, now: NowDep
) -> Response:
    try:
        with db.write() as session, translate_not_found():
            store.remove_member(session, group_id, system_id, now)
        refresh_after_change(db, settings, now, group_ids=[group_id])
    except store.NotAMember as exc:
        raise ApiError(
            404,
            "E_NOT_A_MEMBER",
            f"System {system_id} is not a member of sync group {exc.group_name!r}.",
            f"GET /api/v1/sync-groups/{group_id} lists its members.",
        ) from None
    except store.MemberIsHub as exc:
        raise ApiError(
            409,
            "E_MEMBER_IS_HUB",
            f"System {system_id} is the hub of the directional sync group {exc.group_name!r}.",
            "Choose another member as hub_system_id (or set directional=false) with PUT "
            f"/api/v1/sync-groups/{group_id} first, then remove it.",
        ) from None
    return Response(status_code=204)
