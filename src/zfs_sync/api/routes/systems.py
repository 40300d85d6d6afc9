from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response

from zfs_sync.api.auth import PrincipalDep, check_admin, check_own
from zfs_sync.api.deps import DbDep, Limit, NowDep, Offset, ReadAccess, SettingsDep
from zfs_sync.api.errors import ApiError
from zfs_sync.api.routes.common import (
    COMMON_ERRORS,
    OrjsonRoute,
    doc,
    error_responses,
    set_total,
    translate_not_found,
)
from zfs_sync.api.routes.sync import refresh_after_change
from zfs_sync.api.schemas.systems import (
    HealthList,
    HeartbeatIn,
    HeartbeatOut,
    KeyRotated,
    SystemCreate,
    SystemHealth,
    SystemPublic,
    SystemRegistered,
    SystemUpdate,
)
from zfs_sync.config import Settings
from zfs_sync.domain.health import HealthStatus, system_health
from zfs_sync.storage import revision
from zfs_sync.storage import systems as store
from zfs_sync.storage.models import System

router = APIRouter(
    prefix="/systems", tags=["systems"], responses=COMMON_ERRORS, route_class=OrjsonRoute
)


def timeout_of(system: System, settings: Settings) -> int:
    return system.heartbeat_timeout_seconds or settings.heartbeat_timeout_seconds


def to_public(system: System, settings: Settings, now: datetime) -> SystemPublic:
    timeout = timeout_of(system, settings)
    return SystemPublic(
        id=system.id,
        hostname=system.hostname,
        platform=system.platform,
        ssh_hostname=system.ssh_hostname,
        ssh_user=system.ssh_user,
        ssh_port=system.ssh_port,
        zfs_path=system.zfs_path,
        metadata=system.meta or {},
        last_seen=system.last_seen,
        heartbeat_timeout_seconds=timeout,
        status=system_health(system.last_seen, timeout, now).status,
        agent_version=system.agent_version,
        zfs_version=system.zfs_version,
        capabilities=system.capabilities or {},
        created_at=system.created_at,
        updated_at=system.updated_at,
    )


def to_health(system: System, settings: Settings, now: datetime) -> SystemHealth:
    timeout = timeout_of(system, settings)
    health = system_health(system.last_seen, timeout, now)
    return SystemHealth(
        system_id=system.id,
        hostname=system.hostname,
        status=health.status,
        last_seen=system.last_seen,
        heartbeat_age_seconds=health.age_seconds,
        heartbeat_timeout_seconds=timeout,
    )


def _duplicate(exc: store.DuplicateHostname) -> ApiError:
    return ApiError(
        409,
        "E_HOSTNAME_EXISTS",
        f"A system with hostname {exc.hostname!r} is already registered (id {exc.system_id}).",
        "To re-register it (e.g. after replacing hardware), send the request again with "
        "?replace=true and the admin token; it keeps its id and group memberships.",
    )


@router.post(
    "",
    status_code=201,
    responses=error_responses(403, 409, 413),
    response_model=SystemRegistered,
    description=doc("register", "Register a system. The response carries its API key, once."),
)
@router.post(
    "/register",
    status_code=201,
    response_model=SystemRegistered,
    include_in_schema=False,
)
def register(
    body: SystemCreate,
    principal: PrincipalDep,
    db: DbDep,
    settings: SettingsDep,
    now: NowDep,
    replace: Annotated[bool, Query(description="Re-key an existing hostname (admin).")] = False,
) -> SystemRegistered:
    if replace:
        check_admin(principal, False, "re-register (replace) a system")
    else:
        check_admin(principal, settings.open_registration, "register systems")
    try:
        with db.write() as session:
            system, key = store.register_system(session, body.model_dump(), now, replace=replace)
            public = to_public(system, settings, now)
    except store.DuplicateHostname as exc:
        raise _duplicate(exc) from None
    return SystemRegistered(**public.model_dump(), api_key=key)


@router.get(
    "",
    response_model=list[SystemPublic],
    dependencies=[ReadAccess],
    description=doc("read", "All systems by hostname; total in X-Total-Count."),
)
def list_systems(
    response: Response,
    db: DbDep,
    settings: SettingsDep,
    now: NowDep,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[SystemPublic]:
    with db.read() as session:
        page = store.list_systems(session, limit, offset)
    set_total(response, page.total)
    return [to_public(system, settings, now) for system in page.items]


def _health_list(
    db: DbDep, settings: Settings, now: datetime, status: HealthStatus | None
) -> HealthList:
    with db.read() as session:
        systems = store.all_systems(session)
    items = [to_health(system, settings, now) for system in systems]
    if status is not None:
        items = [item for item in items if item.status is status]
    return HealthList(systems=items, count=len(items))


@router.get(
    "/health/all",
    response_model=HealthList,
    dependencies=[ReadAccess],
    description=doc("read", "Heartbeat health of every system."),
)
def health_all(db: DbDep, settings: SettingsDep, now: NowDep) -> HealthList:
    return _health_list(db, settings, now, None)


@router.get(
    "/health/online",
    response_model=HealthList,
    dependencies=[ReadAccess],
    description=doc("read", "Systems whose last heartbeat is within their timeout."),
)
def health_online(db: DbDep, settings: SettingsDep, now: NowDep) -> HealthList:
    return _health_list(db, settings, now, HealthStatus.ONLINE)


@router.get(
    "/health/offline",
    response_model=HealthList,
    dependencies=[ReadAccess],
    description=doc("read", "Systems whose last heartbeat is older than their timeout."),
)
def health_offline(db: DbDep, settings: SettingsDep, now: NowDep) -> HealthList:
    return _health_list(db, settings, now, HealthStatus.OFFLINE)


@router.get(
    "/{system_id}",
    responses=error_responses(404),
    response_model=SystemPublic,
    dependencies=[ReadAccess],
    description=doc("read", "One system."),
)
def get_system(system_id: str, db: DbDep, settings: SettingsDep, now: NowDep) -> SystemPublic:
    with db.read() as session, translate_not_found():
        return to_public(store.get_system(session, system_id), settings, now)


@router.put(
    "/{system_id}",
    responses=error_responses(403, 404, 409, 413),
    response_model=SystemPublic,
    description=doc("own", "Partial update: only the fields sent change."),
)
def update_system(
    system_id: str,
    body: SystemUpdate,
    principal: PrincipalDep,
    db: DbDep,
    settings: SettingsDep,
    now: NowDep,
) -> SystemPublic:
    check_own(principal, system_id)
    changes = body.model_dump(exclude_unset=True)
    for required in ("hostname", "platform", "ssh_port", "zfs_path", "metadata"):
        if required in changes and changes[required] is None:
            raise ApiError(
                422,
                "E_VALIDATION",
                f"{required} cannot be null.",
                f"Send a value for {required}, or leave it out.",
                errors=[{"loc": ["body", required], "msg": "cannot be null"}],
            )
    try:
        with db.write() as session, translate_not_found():
            public = to_public(store.update_system(session, system_id, changes, now), settings, now)
    except store.DuplicateHostname as exc:
        raise _duplicate(exc) from None
    # ssh fields, zfs path and timeouts are in its groups' plans (and their commands).
    refresh_after_change(db, settings, now, system_id=system_id)
    return public


@router.delete(
    "/{system_id}",
    responses=error_responses(403, 404, 409),
    status_code=204,
    description=doc(
        "group_admin",
        "Delete a system with its snapshots, datasets and group memberships. A system that is "
        "the hub of a directional group: 409 naming the groups, unless `force=true` (the "
        "groups are then disabled).",
    ),
)
def delete_system(
    system_id: str,
    principal: PrincipalDep,
    db: DbDep,
    settings: SettingsDep,
    now: NowDep,
    force: bool = False,
) -> Response:
    check_admin(principal, settings.open_admin, "delete systems")
    try:
        with db.write() as session, translate_not_found():
            store.delete_system(session, system_id, now, force=force)
    except store.HubOfGroups as exc:
        raise ApiError(
            409,
            "E_SYSTEM_IS_HUB",
            f"System {system_id} is the hub of the directional group(s) {', '.join(exc.groups)}.",
            "Change those groups' hub_system_id first, or send ?force=true to delete it and "
            "disable those groups.",
        ) from None
    return Response(status_code=204)


@router.post(
    "/{system_id}/heartbeat",
    responses=error_responses(403, 404, 413),
    response_model=HeartbeatOut,
    description=doc("own", "Record a heartbeat; the body (agent facts) is optional."),
)
def heartbeat(
    system_id: str,
    principal: PrincipalDep,
    db: DbDep,
    settings: SettingsDep,
    now: NowDep,
    body: HeartbeatIn | None = None,
) -> HeartbeatOut:
    check_own(principal, system_id)
    report = body.model_dump(exclude_unset=True) if body else {}
    # Neutral unless the heartbeat changes what plans read (record_heartbeat says so).
    with db.write(plan_neutral=True) as session, translate_not_found():
        store.record_heartbeat(
            session, system_id, report, now, settings.heartbeat_timeout_seconds
        )
        changed = revision.changed(session)
    if changed:  # back online (or new paths, capabilities): its groups' plans change now
        refresh_after_change(db, settings, now, system_id=system_id)
    return HeartbeatOut(system_id=system_id, last_seen=now, status=HealthStatus.ONLINE)


@router.get(
    "/{system_id}/health",
    responses=error_responses(404),
    response_model=SystemHealth,
    dependencies=[ReadAccess],
    description=doc(
        "read", "`online` within the heartbeat timeout, `offline` after, `unknown` if never seen."
    ),
)
def system_health_route(
    system_id: str, db: DbDep, settings: SettingsDep, now: NowDep
) -> SystemHealth:
    with db.read() as session, translate_not_found():
        return to_health(store.get_system(session, system_id), settings, now)


@router.post(
    "/{system_id}/api-key/rotate",
    responses=error_responses(403, 404),
    response_model=KeyRotated,
    description=doc("own", "Issue a new API key; the old one stops working at once."),
)
def rotate_key(system_id: str, principal: PrincipalDep, db: DbDep, now: NowDep) -> KeyRotated:
    check_own(principal, system_id)
    with db.write(plan_neutral=True) as session, translate_not_found():  # keys: not in plans
        key = store.rotate_key(session, system_id, now, by_admin=principal.is_admin)
    return KeyRotated(api_key=key, system_id=system_id)


@router.delete(
    "/{system_id}/api-key",
    responses=error_responses(403, 404),
    status_code=204,
    description=doc("own", "Revoke the key; an admin can rotate to issue a new one."),
)
def revoke_key(system_id: str, principal: PrincipalDep, db: DbDep, now: NowDep) -> Response:
    check_own(principal, system_id)
    with db.write(plan_neutral=True) as session, translate_not_found():  # keys: not in plans
        store.revoke_key(session, system_id, now)
    return Response(status_code=204)
