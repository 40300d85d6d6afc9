"""Dashboard pages (read-only views). Admin actions live in ``actions.py``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from zfs_sync.api.auth import PrincipalDep
from zfs_sync.api.deps import DbDep, NowDep, SettingsDep
from zfs_sync.api.errors import ApiError
from zfs_sync.dashboard import views
from zfs_sync.dashboard.render import may_read, need_sign_in, not_found_page, page
from zfs_sync.storage.common import NotFound

router = APIRouter(include_in_schema=False)


Id = Annotated[str, Query(max_length=64)]


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, principal: PrincipalDep, db: DbDep, settings: SettingsDep,
             now: NowDep) -> Response:
    if not may_read(request, principal, settings):
        return need_sign_in(request)
    with db.read() as session:
        data = views.overview(session, settings, now,
                              views.group_cards(session, settings, now))
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
        cards = views.group_cards(session, settings, now)
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
