"""Signed cookie sessions and CSRF tokens for the dashboard's admin actions.

A session is ``base64(json) + "." + hmac`` in an HttpOnly, SameSite=Strict cookie. It holds
an expiry and a CSRF token; every admin form carries that token and the server compares it.
The secret is ``settings.session_secret`` or a random one kept in the database, so all
replicas accept each other's cookies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from fastapi import Request, Response

from zfs_sync.storage import app_settings
from zfs_sync.storage.common import utcnow
from zfs_sync.storage.db import Database

COOKIE = "zfs_sync_session"
MAX_AGE_SECONDS = 12 * 3600


@dataclass(frozen=True)
class DashboardSession:
    csrf: str
    expires: int


def session_secret(request: Request) -> bytes:
    """The signing secret, read once per app."""
    cached: bytes | None = getattr(request.app.state, "dashboard_secret", None)
    if cached is not None:
        return cached
    configured = request.app.state.settings.session_secret
    if configured:
        secret = str(configured)
    else:
        db: Database = request.app.state.db
        with db.write(plan_neutral=True) as session:
            secret = app_settings.ensure_random_value(
                session, app_settings.SESSION_SECRET, utcnow())
    request.app.state.dashboard_secret = secret.encode()
    return secret.encode()


def _sign(secret: bytes, payload: bytes) -> str:
    return hmac.new(secret, payload, hashlib.sha256).hexdigest()


def encode(secret: bytes, data: DashboardSession) -> str:
    # No "=" padding: cookie jars quote values that contain it.
    raw = json.dumps({"c": data.csrf, "e": data.expires}).encode()
    payload = base64.urlsafe_b64encode(raw).rstrip(b"=")
    return payload.decode() + "." + _sign(secret, payload)


def decode(secret: bytes, cookie: str, now: float) -> DashboardSession | None:
    """The session in a cookie, or None if it is forged, malformed or expired."""
    payload, _, signature = cookie.partition(".")
    # Bytes, not str: compare_digest refuses non-ASCII text with TypeError (a crafted cookie).
    if not hmac.compare_digest(_sign(secret, payload.encode()).encode(), signature.encode()):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        found = DashboardSession(str(data["c"]), int(data["e"]))
    except (ValueError, KeyError, TypeError):
        return None
    return found if found.expires > now else None


def current(request: Request) -> DashboardSession | None:
    cookie = request.cookies.get(COOKIE)
    if not cookie or len(cookie) > 1024:
        return None
    return decode(session_secret(request), cookie, time.time())


def start(request: Request, response: Response) -> DashboardSession:
    data = DashboardSession(secrets.token_urlsafe(24), int(time.time()) + MAX_AGE_SECONDS)
    response.set_cookie(
        COOKIE, encode(session_secret(request), data), max_age=MAX_AGE_SECONDS, httponly=True,
        samesite="strict", secure=request.url.scheme == "https", path="/",
    )
    return data


def end(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")


def csrf_ok(data: DashboardSession | None, token: str | None) -> bool:
    return (
        data is not None
        and bool(token)
        and hmac.compare_digest(data.csrf.encode(), (token or "").encode("utf-8", "surrogatepass"))
    )
