"""Logging for the witness: readable lines on stderr by default, JSON on request.

``ZFS_SYNC_LOG_FORMAT=json`` writes one JSON object per line; ``ZFS_SYNC_LOG_FILE`` writes to
a file instead of stderr, reopened when logrotate moves it (the guide's logrotate config has
no ``copytruncate``). The level name is always in the line, so ``grep ERROR`` finds errors.

Every event written to the event log (sync results, conflicts, systems going offline, ...)
is also logged once, when the transaction that wrote it commits, with its ids.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from zfs_sync.config import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
EVENT_LOGGER = "zfs_sync.events"
LEVELS = {"error": logging.ERROR, "warning": logging.WARNING, "critical": logging.CRITICAL}
_PENDING = "zfs_sync_new_events"
_installed = False


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra`` ids."""

    FIELDS = ("event_id", "event_type", "system_id", "sync_group_id")

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in self.FIELDS:
            if getattr(record, name, None) is not None:
                data[name] = getattr(record, name)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def make_handler(settings: Settings) -> logging.Handler:
    handler: logging.Handler
    if settings.log_file is not None:
        from logging.handlers import WatchedFileHandler

        settings.log_file.parent.mkdir(parents=True, exist_ok=True)
        # WatchedFileHandler reopens the file when logrotate moves it away.
        handler = WatchedFileHandler(settings.log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    return handler


def configure_logging(settings: Settings) -> None:
    root = logging.getLogger()
    root.handlers[:] = [make_handler(settings)]
    root.setLevel(settings.log_level)
    install_event_logging()


def install_event_logging() -> None:
    """Log each stored event once, after its transaction commits (never for a rollback)."""
    global _installed
    if _installed:
        return
    _installed = True
    sa_event.listen(Session, "after_flush", _collect)
    sa_event.listen(Session, "after_commit", _emit)
    sa_event.listen(Session, "after_soft_rollback", _forget)


def _collect(session: Session, _context: Any) -> None:
    from zfs_sync.storage.models import Event

    # Copy the values now (ids are assigned by this flush): after the commit the objects may
    # be expired, and loading them again there would start a new transaction.
    found = [(e.id, e.type, e.severity, e.message, e.system_id, e.sync_group_id)
             for e in session.new if isinstance(e, Event)]
    if found:
        session.info.setdefault(_PENDING, []).extend(found)


def _emit(session: Session) -> None:
    log = logging.getLogger(EVENT_LOGGER)
    for ident, type_, severity, message, system_id, group_id in session.info.pop(_PENDING, []):
        log.log(
            LEVELS.get(severity, logging.INFO),
            "event %s %s: %s [system %s, group %s]",
            ident, type_, message, system_id, group_id,
            extra={"event_id": ident, "event_type": type_,
                   "system_id": system_id, "sync_group_id": group_id},
        )


def _forget(session: Session, _previous: Any) -> None:
    session.info.pop(_PENDING, None)
