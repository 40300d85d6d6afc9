"""FastAPI dependencies as ``Annotated`` aliases."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Query, Request

from zfs_sync.api.auth import PrincipalDep, check_admin, check_read
from zfs_sync.config import Settings
from zfs_sync.domain.parsing import MAX_INT64
from zfs_sync.storage.common import utcnow
from zfs_sync.storage.db import Database

MAX_PAGE = 1000


def get_db(request: Request) -> Database:
    return request.app.state.db  # type: ignore[no-any-return]


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_now() -> datetime:
    """The clock of a request; tests override it to pin time."""
    return utcnow()


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
NowDep = Annotated[datetime, Depends(get_now)]


def require_read(principal: PrincipalDep, settings: SettingsDep) -> None:
    check_read(principal, settings)


def require_group_admin(principal: PrincipalDep, settings: SettingsDep) -> None:
    check_admin(principal, settings.open_admin, "manage sync groups")


ReadAccess = Depends(require_read)
GroupAdminAccess = Depends(require_group_admin)

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size (at most 1000).")]
# The databases' OFFSET is a signed 64-bit integer: a bigger one would be a 500, not a 422.
Offset = Annotated[int, Query(ge=0, le=MAX_INT64, description="Rows to skip.")]
