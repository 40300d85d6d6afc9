"""Logs: text or JSON, to a file reopened after logrotate moves it; events logged once."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from zfs_sync.config import load_settings
from zfs_sync.logs import configure_logging
from zfs_sync.storage.db import Database
from zfs_sync.storage.events import record_event


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        handler.close()
    root.handlers[:], root.level = handlers, level


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_json_file_logs_each_committed_event_once(
    db: Database, tmp_path: Path, restore_logging: None
) -> None:
    log_file = tmp_path / "log" / "zfs-sync.log"
    configure_logging(load_settings(env={}, log_format="json", log_file=str(log_file)))
    with db.write() as session:
        record_event(
            session,
            "sync.error",
            "g1: data on b is error: boom",
            severity="error",
            system_id="sys-1",
            sync_group_id="grp-1",
        )
    with pytest.raises(RuntimeError), db.write() as session:
        record_event(session, "sync.error", "rolled back", severity="error")
        session.flush()
        raise RuntimeError("abort")
    records = [json.loads(line) for line in lines(log_file)]
    events = [r for r in records if r.get("event_type") == "sync.error"]
    assert len(events) == 1
    assert events[0]["level"] == "ERROR" and events[0]["system_id"] == "sys-1"
    assert events[0]["sync_group_id"] == "grp-1" and isinstance(events[0]["event_id"], int)

    # logrotate without copytruncate: the file is moved away, the witness writes a new one.
    log_file.rename(log_file.with_suffix(".log.1"))
    logging.getLogger("zfs_sync.test").warning("after rotation")
    assert "after rotation" in lines(log_file)[-1]


def test_text_format_has_the_level_for_grep(tmp_path: Path, restore_logging: None) -> None:
    log_file = tmp_path / "zfs-sync.log"
    configure_logging(load_settings(env={}, log_file=str(log_file)))
    logging.getLogger("zfs_sync.test").error("webhook failed")
    assert [line for line in lines(log_file) if " ERROR " in line][0].endswith("webhook failed")
