"""Admin actions from the dashboard: sign in/out and the forms that change things.

Every POST here needs a signed session cookie AND its CSRF token (checked server-side; 403
otherwise), and then calls the API's own route function with an admin principal, so a form
does exactly what the matching API request does (one data path).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from zfs_sync.api import ratelimit
from zfs_sync.api.auth import Principal, Role
from zfs_sync.api.deps import DbDep, NowDep, SettingsDep
from zfs_sync.api.errors import ApiError
from zfs_sync.api.routes import conflicts as conflicts_api
from zfs_sync.api.routes import groups as groups_api
from zfs_sync.api.routes import sync as sync_api
from zfs_sync.api.routes import systems as systems_api
from zfs_sync.api.schemas.groups import MemberIn, SyncGroupCreate, SyncGroupUpdate
from zfs_sync.api.schemas.sync import ResolveIn
from zfs_sync.dashboard import session as sessions
from zfs_sync.dashboard import views
from zfs_sync.dashboard.render import page
from zfs_sync.storage import credentials
from zfs_sync.storage import groups as group_store
from zfs_sync.storage.common import NotFound

router = APIRouter(include_in_schema=False)
ADMIN = Principal(Role.ADMIN)
MAX_FORM_BYTES = 256 * 1024
T = TypeVar("T")
Form = dict[str, list[str]]


async def read_form(request: Request) -> Form:
    """An urlencoded form body (the dashboard's forms send nothing else)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


FormDep = Annotated[Form, Depends(read_form)]


def one(form: Form, key: str, default: str = "") -> str:
    return (form.get(key) or [default])[0]


def refused(request: Request, why: str) -> HTMLResponse:
    return page(request, "error.html", {"title": "Refused", "message": why}, status=403)


def admin_refusal(request: Request, form: Form) -> HTMLResponse | None:
    """None when the request has a valid session and its CSRF token; else a 403 page."""
    current = sessions.current(request)
    if current is None:
        return refused(request, "Sign in with the admin token to do this.")
    if not sessions.csrf_ok(current, one(form, "csrf")):
        return refused(request, "The form's CSRF token is missing or wrong; reload the page.")
    return None


def failed(request: Request, exc: Exception) -> HTMLResponse:
    if isinstance(exc, ApiError):
        message, status = f"{exc.detail} {exc.hint}".strip(), exc.status
    elif isinstance(exc, ValidationError):
        message = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                            for e in exc.errors())
        status = 422
    else:
        message, status = str(exc), 404
    return page(request, "error.html", {"title": "Not done", "message": message}, status=status)


def attempt(request: Request, form: Form, run: Callable[[], T],
            done: Callable[[T], Response]) -> Response:
    """Check session and CSRF, run the API call, and turn its errors into a page."""
    refusal = admin_refusal(request, form)
    if refusal is not None:
        return refusal
    try:
        result = run()
    except (ApiError, ValidationError, NotFound) as exc:
        return failed(request, exc)
    return done(result)


def go(url: str) -> Callable[[Any], Response]:
    return lambda _result: RedirectResponse(url, status_code=303)


# -- signing in ------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    return page(request, "login.html", {"title": "Sign in"})


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, form: FormDep, db: DbDep) -> Response:
    token = one(form, "token")
    retry_after = ratelimit.locked_for(request) if token else None
    if retry_after is not None:
        locked = page(request, "login.html", {"title": "Sign in", "error": (
            "Too many failed sign-ins from this address: try again in "
            f"{retry_after} s.")}, status=429)
        locked.headers["Retry-After"] = str(retry_after)
        return locked
    with db.read() as session:
        good = bool(token) and credentials.is_admin_token(
            credentials.admin_token_hash(session), token)
    if not good:
        if token:
            ratelimit.record_failure(request)
        return page(request, "login.html", {"title": "Sign in",
                                            "error": "That is not the admin token."}, status=401)
    response = RedirectResponse("/", status_code=303)
    sessions.start(request, response)
    return response


@router.post("/logout")
def logout(request: Request, form: FormDep) -> Response:
    refusal = admin_refusal(request, form)
    if refusal is not None:
        return refusal
    response = RedirectResponse("/", status_code=303)
    sessions.end(response)
    return response


# -- sync groups -----------------------------------------------------------------------------


def group_fields(form: Form) -> dict[str, Any]:
    """The group form as an API body (checkboxes absent = false)."""
    fields: dict[str, Any] = {
        "name": one(form, "name").strip(),
        "description": one(form, "description"),
        "sync_interval_seconds": one(form, "sync_interval_seconds", "3600") or "3600",
        "directional": one(form, "directional") == "on",
        "hub_system_id": one(form, "hub_system_id") or None,
        "system_ids": [s for s in form.get("system_ids", []) if s],
        "datasets": [d.strip() for d in one(form, "datasets").splitlines() if d.strip()],
        "snapshot_pattern": one(form, "snapshot_pattern").strip(),
        "allow_rollback": one(form, "allow_rollback") == "on",
        "enabled": one(form, "enabled") == "on",
    }
    if not fields["directional"]:
        fields["hub_system_id"] = None
    return fields


def _form_page(request: Request, db: DbDep, group: Any | None) -> Response:
    with db.read() as session:
        hosts = views.names(session).hosts
    return page(request, "group_form.html", {"title": "Edit group" if group else "New group",
                                             "g": group, "hosts": hosts, "nav": "groups"})


@router.get("/groups/new", response_class=HTMLResponse)
def new_group_form(request: Request, db: DbDep) -> Response:
    return _form_page(request, db, None)


@router.get("/groups/{group_id}/edit", response_class=HTMLResponse)
def edit_group_form(group_id: str, request: Request, db: DbDep) -> Response:
    try:
        with db.read() as session:
            group = groups_api.to_public(group_store.get_group_view(session, group_id))
    except NotFound as exc:
        return failed(request, exc)
    return _form_page(request, db, group)


@router.post("/groups/new")
def create_group(request: Request, form: FormDep, db: DbDep, settings: SettingsDep,
                 now: NowDep) -> Response:
    return attempt(
        request, form,
        lambda: groups_api.create_group(SyncGroupCreate.model_validate(group_fields(form)),
                                        db, settings, now),
        lambda created: RedirectResponse(f"/groups/{created.id}", status_code=303),
    )


@router.post("/groups/{group_id}/edit")
def edit_group(group_id: str, request: Request, form: FormDep, db: DbDep,
               settings: SettingsDep, now: NowDep) -> Response:
    return attempt(
        request, form,
        lambda: groups_api.update_group(
            group_id, SyncGroupUpdate.model_validate(group_fields(form)), db, settings, now),
        go(f"/groups/{group_id}"),
    )


@router.post("/groups/{group_id}/enabled")
def set_enabled(group_id: str, request: Request, form: FormDep, db: DbDep,
                settings: SettingsDep, now: NowDep) -> Response:
    body = SyncGroupUpdate.model_validate({"enabled": one(form, "enabled") == "true"})
    return attempt(request, form,
                   lambda: groups_api.update_group(group_id, body, db, settings, now),
                   go(f"/groups/{group_id}"))


@router.post("/groups/{group_id}/members")
def add_member(group_id: str, request: Request, form: FormDep, db: DbDep,
               settings: SettingsDep, now: NowDep) -> Response:
    return attempt(
        request, form,
        lambda: groups_api.add_member(
            group_id, MemberIn(system_id=one(form, "system_id"), root=one(form, "root") or None),
            db, settings, now),
        go(f"/groups/{group_id}"),
    )


@router.post("/groups/{group_id}/members/{system_id}/remove")
def remove_member(group_id: str, system_id: str, request: Request, form: FormDep, db: DbDep,
                  settings: SettingsDep, now: NowDep) -> Response:
    return attempt(request, form,
                   lambda: groups_api.remove_member(group_id, system_id, db, settings, now),
                   go(f"/groups/{group_id}"))


@router.post("/groups/{group_id}/check")
def check_group(group_id: str, request: Request, form: FormDep, db: DbDep,
                settings: SettingsDep, now: NowDep) -> Response:
    return attempt(request, form,
                   lambda: sync_api.check_group(group_id, ADMIN, db, settings, now),
                   go(f"/groups/{group_id}"))


# -- conflicts and keys ----------------------------------------------------------------------


@router.post("/conflicts/{conflict_id}/resolve")
def resolve_conflict(conflict_id: str, request: Request, form: FormDep, db: DbDep,
                     settings: SettingsDep, now: NowDep) -> Response:
    def run() -> object:
        if one(form, "strategy") == "rollback_target" and one(form, "confirm") != "on":
            raise ApiError(422, "E_NOT_CONFIRMED", "A rollback destroys the snapshots listed "
                           "on the conflict page; tick the box to confirm.", "")
        body = ResolveIn.model_validate({"strategy": one(form, "strategy"),
                                         "note": one(form, "note") or None})
        return conflicts_api.resolve(conflict_id, body, ADMIN, db, settings, now)

    return attempt(request, form, run, go(f"/conflicts/{conflict_id}"))


@router.post("/systems/{system_id}/rotate-key", response_class=HTMLResponse)
def rotate_key(system_id: str, request: Request, form: FormDep, db: DbDep,
               now: NowDep) -> Response:
    return attempt(
        request, form,
        lambda: systems_api.rotate_key(system_id, ADMIN, db, now),
        lambda rotated: page(request, "key.html", {"title": "New API key", "key": rotated,
                                                   "nav": "systems"}),
    )
