"""Templates, filters and the page guard shared by the dashboard's page and action routes."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader

from zfs_sync import __version__
from zfs_sync.api.auth import Principal, Role
from zfs_sync.api.routes.stream import newest_event_id
from zfs_sync.config import Settings
from zfs_sync.dashboard import session as sessions

HERE = Path(__file__).parent
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
# Autoescape on for every template: hostnames, descriptions and messages are user data.
templates = Jinja2Templates(env=Environment(
    loader=FileSystemLoader(str(HERE / "templates")), autoescape=True))


def ago(seconds: int | float | None) -> str:
    """``2 min ago``-style text for an age in seconds."""
    if seconds is None:
        return "never"
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def duration(seconds: int | float | None) -> str:
    if not seconds:
        return "0"
    return ago(seconds).removesuffix(" ago")


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


templates.env.filters.update(ago=ago, duration=duration, when=when)


def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    """Render a page with the session (for admin forms), a strict CSP and no framing."""
    current = sessions.current(request)
    response = templates.TemplateResponse(
        request, name,
        {"signed_in": current is not None, "csrf": current.csrf if current else "",
         "version": __version__, "last_event_id": newest_event_id(request.app.state.db),
         **context},
        status_code=status,
    )
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"  # frame-ancestors for older browsers
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def may_read(request: Request, principal: Principal, settings: Settings) -> bool:
    """Public reads, any valid key, or a signed-in dashboard session."""
    return (settings.public_read or principal.role is not Role.ANONYMOUS
            or sessions.current(request) is not None)


def need_sign_in(request: Request) -> HTMLResponse:
    return page(request, "login.html", {"title": "Sign in", "error": "Public reads are off: "
                "sign in with the admin token to see the dashboard."}, status=401)


def not_found_page(request: Request, kind: str, ident: str) -> HTMLResponse:
    return page(request, "error.html", {"title": "Not found",
                                        "message": f"No {kind} with id {ident}."}, status=404)
