from __future__ import annotations

from fastapi import APIRouter

from zfs_sync import planning
from zfs_sync.api.deps import DbDep, NowDep, ReadAccess, SettingsDep
from zfs_sync.api.errors import not_found
from zfs_sync.api.routes.common import COMMON_ERRORS, doc, error_responses
from zfs_sync.api.schemas.sync import ProtectedList, ProtectedOut
from zfs_sync.domain.retention import protected_snapshots
from zfs_sync.storage.models import System

router = APIRouter(tags=["sync"], responses=COMMON_ERRORS)


@router.get(
    "/systems/{system_id}/protected-snapshots",
    responses=error_responses(404),
    response_model=ProtectedList,
    dependencies=[ReadAccess],
    description=doc(
        "read",
        "Snapshots on this system that pruning must not destroy: the base of every "
        "replication edge it is part of (`reason: base`), and what it still owes a target that "
        "is behind (`reason: owed`, for at most ZFS_SYNC_MAX_PROTECT_SECONDS). The agent's "
        "`may-destroy` asks this.",
    ),
)
def protected(system_id: str, db: DbDep, settings: SettingsDep, now: NowDep) -> ProtectedList:
    with db.read() as session:
        if session.get(System, system_id) is None:
            raise not_found("system", system_id)
        plans = planning.plans_for_system(session, system_id, settings, now)
    found = protected_snapshots(plans, now, system_id, settings.max_protect_seconds)
    items = [
        ProtectedOut(
            system_id=p.system_id,
            dataset=p.dataset,
            snapshot=p.snapshot,
            snapshot_id=p.snapshot_id,
            reason=p.reason.value,
            sync_group_id=p.sync_group_id,
            peer_system_id=p.peer_system_id,
        )
        for p in found
    ]
    return ProtectedList(system_id=system_id, count=len(items), snapshots=items)
