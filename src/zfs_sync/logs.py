"""Logging set-up for the witness: readable lines on stderr by default."""

from __future__ import annotations

import logging
import sys

from zfs_sync.config import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(settings: Settings) -> None:
    handler: logging.Handler
    if settings.log_file is not None:
        from logging.handlers import WatchedFileHandler

        settings.log_file.parent.mkdir(parents=True, exist_ok=True)
        # WatchedFileHandler reopens the file when logrotate moves it away.
        handler = WatchedFileHandler(settings.log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
