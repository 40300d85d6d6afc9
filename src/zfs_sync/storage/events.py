"""The append-only event log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from zfs_sync.storage.common import Page, utcnow
from zfs_sync.storage.models import Event


def record_event(
    session: Session,
    type_: str,
    message: str,
    *,
    system_id: str | None = None,
    sync_group_id: str | None = None,
    severity: str = "info",
    data: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Event:
    """Add an event in the caller's transaction, so it exists exactly when the change does."""
    event = Event(
        created_at=now or utcnow(),
        type=type_,
        severity=severity,
        system_id=system_id,
        sync_group_id=sync_group_id,
        message=message,
        data=data or {},
    )
    session.add(event)
    return event


def list_events(
    session: Session,
    *,
    since: datetime | None = None,
    type_: str | None = None,
    system_id: str | None = None,
    sync_group_id: str | None = None,
    after_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Page[Event]:
    """Newest first (oldest first when following ``after_id``)."""
    query = select(Event)
    if since is not None:
        query = query.where(Event.created_at >= since)
    if type_:
        # "system" matches "system.online", "system.offline", ...
        query = query.where((Event.type == type_) | Event.type.startswith(type_ + "."))
    if system_id:
        query = query.where(Event.system_id == system_id)
    if sync_group_id:
        query = query.where(Event.sync_group_id == sync_group_id)
    if after_id is not None:
        query = query.where(Event.id > after_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    order = Event.id.asc() if after_id is not None else Event.id.desc()
    items = list(session.scalars(query.order_by(order).limit(limit).offset(offset)))
    return Page(items, total)
