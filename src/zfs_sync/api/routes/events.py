from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from zfs_sync.api.deps import DbDep, Limit, Offset, ReadAccess
from zfs_sync.api.routes.common import COMMON_ERRORS, doc, set_total
from zfs_sync.api.schemas.common import Timestamp
from zfs_sync.api.schemas.events import EventPublic
from zfs_sync.storage.events import list_events

router = APIRouter(prefix="/events", tags=["events"], responses=COMMON_ERRORS)


@router.get(
    "",
    response_model=list[EventPublic],
    dependencies=[ReadAccess],
    description=doc(
        "read",
        "The activity log, newest first. `type` matches exactly or by prefix "
        "(`system` matches `system.online`).",
    ),
)
def get_events(
    response: Response,
    db: DbDep,
    since: Annotated[
        Timestamp | None, Query(description="Only events at or after this time.")
    ] = None,
    type: Annotated[str | None, Query(max_length=64, description="Event type or prefix.")] = None,
    system_id: Annotated[str | None, Query(max_length=36)] = None,
    sync_group_id: Annotated[str | None, Query(max_length=36)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[EventPublic]:
    with db.read() as session:
        page = list_events(
            session,
            since=since,
            type_=type,
            system_id=system_id,
            sync_group_id=sync_group_id,
            limit=limit,
            offset=offset,
        )
        items = [EventPublic.model_validate(event) for event in page.items]
    set_total(response, page.total)
    return items
