"""Who is calling, and what they may do (DESIGN.md §6: secure by default).

Both credentials are accepted in both headers: ``X-API-Key: <key>`` and
``Authorization: Bearer <key>``. Every 401/403 says which credential the route needs.
Failed authentications are counted per client address (``ratelimit.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from zfs_sync.api import ratelimit
from zfs_sync.api.errors import ApiError
from zfs_sync.config import Settings
from zfs_sync.storage import credentials
from zfs_sync.storage.db import Database

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="A system's API key or the admin token."
)
bearer = HTTPBearer(auto_error=False, description="A system's API key or the admin token.")


class Role(StrEnum):
    ANONYMOUS = "anonymous"
    SYSTEM = "system"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    role: Role
    system_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


ANONYMOUS = Principal(Role.ANONYMOUS)


def _presented(key: str | None, bearer_creds: HTTPAuthorizationCredentials | None) -> str | None:
    token = bearer_creds.credentials if bearer_creds else None
    if key and token and key != token:
        raise ApiError(
            400,
            "E_AMBIGUOUS_CREDENTIALS",
            "X-API-Key and Authorization carry different credentials.",
            "Send one credential, in either header.",
        )
    return key or token


def get_principal(
    request: Request,
    key: Annotated[str | None, Security(api_key_header)] = None,
    bearer_creds: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None,
) -> Principal:
    if not (key or bearer_creds):
        return ANONYMOUS
    ratelimit.refuse_if_locked(request)  # before looking: a locked-out guess learns nothing
    presented = _presented(key, bearer_creds)
    if not presented:
        return ANONYMOUS
    db: Database = request.app.state.db
    with db.read() as session:
        if credentials.is_admin_token(credentials.admin_token_hash(session), presented):
            return Principal(Role.ADMIN)
        system = credentials.system_for_key(session, presented)
    if system is None:
        ratelimit.record_failure(request)
        raise ApiError(
            401,
            "E_INVALID_CREDENTIAL",
            "The API key or admin token is not valid (unknown, revoked or rotated).",
            "Use the key returned at registration or by the last rotation, or the admin token.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Principal(Role.SYSTEM, system.id)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def _unauthorized(needed: str) -> ApiError:
    return ApiError(
        401,
        "E_UNAUTHORIZED",
        f"This request needs {needed}.",
        "Send it in X-API-Key or Authorization: Bearer.",
        headers={"WWW-Authenticate": "Bearer"},
    )


def check_read(principal: Principal, settings: Settings) -> None:
    if principal.role is Role.ANONYMOUS and not settings.public_read:
        raise _unauthorized("a system API key or the admin token (public reads are off)")


def check_admin(principal: Principal, open_switch: bool, what: str) -> None:
    """Admin token, unless the matching ``open_*`` switch is on."""
    if principal.is_admin or open_switch:
        return
    if principal.role is Role.ANONYMOUS:
        raise _unauthorized(f"the admin token ({what})")
    raise ApiError(
        403,
        "E_ADMIN_REQUIRED",
        f"A system API key cannot {what}; this needs the admin token.",
        "Use the admin token (see `zfs-sync config show` for where it is kept).",
    )


def check_own(principal: Principal, system_id: str) -> None:
    """The system's own key or the admin token."""
    if principal.is_admin or principal.system_id == system_id:
        return
    if principal.role is Role.ANONYMOUS:
        raise _unauthorized(f"the API key of system {system_id} or the admin token")
    raise ApiError(
        403,
        "E_FORBIDDEN_SYSTEM",
        f"This API key belongs to system {principal.system_id} and cannot act for "
        f"system {system_id}.",
        "Use that system's own API key, or the admin token.",
    )
