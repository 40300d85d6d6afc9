"""Crash safety on SQLite: SIGKILL under load loses no acknowledged write and leaves nothing
half-written; a locked database answers 503 with Retry-After, never 500.

The full form (20 kills, figures, PostgreSQL too) is ``bench/crash.py``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ADMIN, ADMIN_TOKEN
from tests.reliability.faults import ACKED, ERROR, FAILED, count, run_crash_campaign
from zfs_sync.storage import db as db_module


def test_kill9_under_load_loses_nothing_and_leaves_nothing_partial(tmp_path: Path) -> None:
    figures = run_crash_campaign(
        tmp_path / "witness", f"sqlite:///{tmp_path}/witness/zfs_sync.db", kills=5,
        min_delay=1.0, max_delay=3.0, full=2, batch=2, groups=1, datasets=20, snapshots=200,
    )
    print(figures.summary())
    assert figures.kills == 5
    assert figures.problems == []  # no LOST, no PARTIAL, nothing stored that was refused
    assert count(figures.records, ERROR) == 0
    # The run means something only if writes were both acknowledged and cut off.
    assert count(figures.records, ACKED) > 0
    assert count(figures.records, FAILED) > 0
    assert figures.check_ok, figures.check_output


@pytest.fixture
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # 30 s in production; a writer that waits that long would make this test slow.
    monkeypatch.setattr(db_module, "SQLITE_BUSY_TIMEOUT_MS", 300)
    yield


def test_locked_sqlite_answers_503_with_retry_after(
    tmp_path: Path, sqlite_template: Path, short_busy_timeout: None
) -> None:
    from fastapi.testclient import TestClient

    from zfs_sync.api.app import create_app
    from zfs_sync.config import load_settings

    path = tmp_path / "zfs_sync.db"
    path.write_bytes(sqlite_template.read_bytes())
    url = f"sqlite:///{path}"
    settings = load_settings(env={}, database_url=url, data_dir=str(tmp_path / "data"),
                             admin_token=ADMIN_TOKEN)
    database = db_module.Database(url)
    with TestClient(create_app(settings, db=database), raise_server_exceptions=False) as client:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
        try:
            response = client.post("/api/v1/systems", headers=ADMIN,
                                   json={"hostname": "locked", "platform": "linux"})
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"].isdigit()
        body = response.json()
        assert body["code"] == "E_DATABASE_UNAVAILABLE"
        assert body["detail"] and body["hint"]
        # Once the lock is gone the same request succeeds.
        response = client.post("/api/v1/systems", headers=ADMIN,
                               json={"hostname": "locked", "platform": "linux"})
        assert response.status_code == 201, response.text
    database.dispose()
