"""Dashboard pages (read-only views). Admin actions live in ``actions.py``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from zfs_sync.api.auth import PrincipalDep
from zfs_sync.api.deps import DbDep, NowDep, SettingsDep
from zfs_sync.api.errors import ApiError
from zfs_sync.api.routes.stream import newest_event_id
from zfs_sync.config import Settings
from zfs_sync.dashboard import views
from zfs_sync.dashboard.render import may_read, need_sign_in, not_found_page, page
from zfs_sync.storage.common import NotFound

router = APIRouter(include_in_schema=False)
CARD_SECONDS = 10


def group_cards(request: Request, session: Session, settings: Settings,
                now: datetime) -> list[views.GroupCard]:
    """Every group's status, planned at most once per event and 10 s of clock.

    Planning the whole fleet is the costly part of the overview and the groups page, and every
    open dashboard refreshes on every event. A state change, a group change and a late edge
    all write an event, so the newest event id (plus a coarse clock for lag) says when the
    cards can have changed.
    """
    key = (newest_event_id(request.app.state.db), int(now.timestamp()) // CARD_SECONDS)
    cached = getattr(request.app.state, "dashboard_cards", None)
    if cached is not None and cached[0] == key:
        return cached[1]  # type: ignore[no-any-return]
    cards = views.group_cards(session, settings, now)
    request.app.state.dashboard_cards = (key, cards)
    return cards

Id = Annotated[str, Query(max_length=64)]


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, principal: PrincipalDep, db: DbDep, settings: SettingsDep,
             now: NowDep) -> Response:
    if not may_read(request, principal, settings):
        return need_sign_in(request)
    with db.read() as session:
        data = views.overview(session, settings, now,
                              group_cards(request, session, settings, now))
        labels = views.names(session)
    return page(request, "overview.html", {"title": "Overview", "o": data, "names": labels,
                                           "nav": "overview"})


@router.get("/systems", response_class=HTMLResponse)
def systems(request: Request, principal: PrincipalDep, db: DbDep, settings: SettingsDep,
            now: NowDep) -> Response:
    if not may_read(request, principal, settings):
        return need_sign_in(request)
    with db.read() as session:
        rows = views.system_rows(session, settings, now)
    return page(request, "systems.html", {"title": "Systems", "rows": rows, "nav": "systems"})


@router.get("/systems/{system_id}", response_class=HTMLResponse)
def system(system_id: str, request: Request, principal: PrincipalDep, db: DbDep,
           settings: SettingsDep, now: NowDep) -> Response:
    if not may_read(request, principal, settings):
        return need_sign_in(request)
    try:
        with db.read() as session:
            detail = views.system_detail(session, system_id, settings, now)
            labels = views.names(session)
    except NotFound:
        return not_found_page(request, "system", system_id)
    return page(request, "system.html", {"title": detail.system.hostname, "d": detail,
                                         "names": labels, "nav": "systems"})


@router.get("/groups", response_class=HTMLResponse)
def groups(request: Request, principal: PrincipalDep, db: DbDep, settings: SettingsDep,
           now: NowDep) -> Response:
    if not may_read(request, principal, settings):
        return need_sign_in(request)
    with db.read() as session:
        cards = group_cards(request, session, settings, now)
        labels = views.names(session)
    return page(request, "groups.html", {"title": "Sync Groups", "cards": cards,
                                         "names": labels, "nav": "groups"})


@router.get("/groups/{group_id}", response_class=HTMLResponse)
def group(group_id: str, request: Request, principal: PrincipalDep, db: DbDep,
          settings: SettingsDep, now: NowDep) -> Response:
    if not may_read(request, principal, settings):
        return need_sign_in(request)
    try:
        with db.read() as session:
            detail = views.group_detail(session, group_id, settings, now)
            labels = views.names(session)
    except (NotFound, ApiError):
        return not_found_page(request, "sync group", group_id)
    return page(request, "group.html", {"title": detail.group.name, "d": detail,
                                        "names": labels, "nav": "groups"})


@router.get("/conflicts", response_class=HTMLResponse)
def conflicts(request: Request, principal: PrincipalDep, db: DbDep, settings: SettingsDep,
              status: Annotated[str | None, Query(max_length=16)] = "open") -> Response:
    if not may_read(request, principal, settings):
        return need_sign_in(request)
    status = status if status in ("open", "resolved", "ignored", "cleared") else None
    with db.read() as session:
        rows = views.conflicts(session, status)
        labels = views.names(session)
    return page(request, "conflicts.html", {"title": "Conflicts", "rows": rows, "names": labels,
                                            "status": status or "", "nav": "conflicts"})


@router.get("/conflicts/{conflict_id}", response_class=HTMLResponse)
def conflict(conflict_id: str, request: Request, principal: PrincipalDep, db: DbDep,
             settings: SettingsDep) -> Response:
    if not may_read(request, principal, settings):
        return need_sign_in(request)
    try:
        with db.read() as session:
            row = views.conflict(session, conflict_id)
            labels = views.names(session)
    except NotFound:
        return not_found_page(request, "conflict", conflict_id)
    return page(request, "conflict.html", {"title": "Conflict", "c": row, "names": labels,
                                           "nav": "conflicts"})


@router.get("/activity", response_class=HTMLResponse)
def activity(request: Request, principal: PrincipalDep, db: DbDep, settings: SettingsDep,
             type: Annotated[str | None, Query(max_length=64)] = None,
             system_id: Annotated[str | None, Query(max_length=64)] = None,
             sync_group_id: Annotated[str | None, Query(max_length=64)] = None,
             offset: Annotated[int, Query(ge=0)] = 0) -> Response:
    if not may_read(request, principal, settings):
        return need_sign_in(request)
    with db.read() as session:
        events, total = views.activity(session, type or None, system_id or None,
                                       sync_group_id or None, offset)
        labels = views.names(session)
    filters = {"type": type or "", "system_id": system_id or "",
               "sync_group_id": sync_group_id or ""}
    return page(request, "activity.html", {"title": "Activity", "events": events, "total": total,
                                           "offset": offset, "filters": filters,
                                           "names": labels, "nav": "activity"})
