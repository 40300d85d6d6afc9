"""Everything the witness does once before it serves: database file, migrations, admin token."""

from __future__ import annotations

import logging
from pathlib import Path

from zfs_sync.config import Settings
from zfs_sync.storage import credentials
from zfs_sync.storage.db import Database, prepare_sqlite_file

log = logging.getLogger(__name__)


def open_database(settings: Settings, *, migrate: bool = True) -> Database:
    url = settings.resolved_database_url()
    prepare_sqlite_file(url)
    db = Database(url)
    if migrate:
        db.upgrade()
    return db


def ensure_admin_token(db: Database, settings: Settings) -> Path | None:
    """Store the admin token's hash; on first start generate it. Returns the new file's path."""
    data_dir = settings.resolved_data_dir()
    with db.write() as session:
        generated = credentials.ensure_admin_token(session, settings.admin_token, data_dir)
    if generated is None:
        return None
    path = data_dir / credentials.ADMIN_TOKEN_FILE
    log.warning("generated the admin token and wrote it to %s (mode 0600)", path)
    return path
