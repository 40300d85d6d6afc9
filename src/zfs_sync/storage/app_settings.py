"""Small named values kept in the ``app_settings`` table (shared by every replica)."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from zfs_sync.storage.models import AppSetting

SESSION_SECRET = "dashboard_session_secret"


def get_value(session: Session, key: str) -> str | None:
    row = session.get(AppSetting, key)
    return row.value if row else None


def ensure_random_value(session: Session, key: str, now: datetime) -> str:
    """The stored value of ``key``, creating a random one the first time.

    Two replicas starting together may both try to insert: the loser's insert fails on the
    primary key, and it reads the winner's value instead.
    """
    found = get_value(session, key)
    if found is not None:
        return found
    value = secrets.token_urlsafe(32)
    try:
        with session.begin_nested():
            session.add(AppSetting(key=key, value=value, updated_at=now))
    except IntegrityError:
        return get_value(session, key) or value
    return value
