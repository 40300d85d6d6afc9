"""Database creation, recreation, migrations and the admin token on start."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from tests.conftest import PG_URL
from zfs_sync.bootstrap import ensure_admin_token, open_database
from zfs_sync.config import load_settings
from zfs_sync.storage import credentials
from zfs_sync.storage.db import Database
from zfs_sync.storage.models import Base


def _settings(tmp_path: Path, **extra: object):  # type: ignore[no-untyped-def]
    return load_settings(env={}, data_dir=str(tmp_path), **extra)


def test_first_start_creates_and_migrates_sqlite(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "nested" / "dir")
    db = open_database(settings)
    assert (tmp_path / "nested" / "dir" / "zfs_sync.db").exists()
    assert db.is_at_head()
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    db.dispose()


def test_deleted_database_is_recreated_and_stale_wal_moved_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(tmp_path)
    db = open_database(settings)
    with db.write() as session:
        session.execute(text("INSERT INTO app_settings VALUES ('x', 'y', '2026-01-01 00:00:00')"))
    db.dispose()
    path = tmp_path / "zfs_sync.db"
    (tmp_path / "zfs_sync.db-wal").write_bytes(b"stale wal contents")
    (tmp_path / "zfs_sync.db-shm").write_bytes(b"stale shm")
    path.unlink()  # the guide: "rm /var/lib/zfs-sync/zfs_sync.db; Service will recreate"
    db = open_database(settings)
    assert db.is_at_head()
    with db.read() as session:
        assert session.execute(text("SELECT count(*) FROM app_settings")).scalar() == 0
    moved = sorted(p.name for p in tmp_path.iterdir() if ".stale-" in p.name)
    assert [name.split(".stale-")[0] for name in moved] == ["zfs_sync.db-shm", "zfs_sync.db-wal"]
    assert "moved it to" in caplog.text
    db.dispose()


def test_migrations_match_the_models(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_db_upgrade_command(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from zfs_sync.cli import main

    result = CliRunner().invoke(main, ["db", "upgrade"], env={"ZFS_SYNC_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert "(head)" in result.output
    tables = inspect(create_engine(f"sqlite:///{tmp_path / 'zfs_sync.db'}")).get_table_names()
    assert {"systems", "snapshots", "sync_groups", "events"} <= set(tables)


@pytest.mark.postgres
def test_concurrent_migrations_on_postgres_do_not_race() -> None:
    if not PG_URL:
        pytest.skip("ZFS_SYNC_TEST_POSTGRES_URL is not set")
    base = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"),
                         isolation_level="AUTOCOMMIT")
    name = f"zfs_sync_race_{os.getpid()}"
    with base.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.url.set(database=name).render_as_string(hide_password=False)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            replica = Database(url)
            replica.upgrade()
            replica.dispose()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert Database(url).is_at_head()
    finally:
        with base.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        base.dispose()


def test_admin_token_generated_once_with_mode_0600(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    db = open_database(settings)
    path = ensure_admin_token(db, settings)
    assert path == tmp_path / "admin-token"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    token = path.read_text().strip()
    with db.read() as session:
        stored = credentials.admin_token_hash(session)
    assert stored == credentials.hash_secret(token) and token not in stored
    assert ensure_admin_token(db, settings) is None  # second start keeps it
    assert path.read_text().strip() == token
    db.dispose()


def test_refuses_to_start_when_token_file_is_readable_by_others(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    db = open_database(settings)
    path = ensure_admin_token(db, settings)
    assert path is not None
    path.chmod(0o644)
    with pytest.raises(credentials.InsecureTokenFile, match="chmod 600"):
        ensure_admin_token(db, settings)
    db.dispose()


def test_env_admin_token_replaces_stored_hash(tmp_path: Path) -> None:
    settings = _settings(tmp_path, admin_token="first-admin-token-123")
    db = open_database(settings)
    ensure_admin_token(db, settings)
    ensure_admin_token(db, _settings(tmp_path, admin_token="second-admin-token-456"))
    with db.read() as session:
        assert credentials.is_admin_token(credentials.admin_token_hash(session), "second-admin-token-456")
        assert not credentials.is_admin_token(credentials.admin_token_hash(session), "first-admin-token-123")
    assert not (tmp_path / "admin-token").exists()
    db.dispose()


def test_sqlite_writers_queue_instead_of_failing(tmp_path: Path) -> None:
    db = open_database(_settings(tmp_path))
    failures: list[BaseException] = []

    def write(i: int) -> None:
        try:
            for j in range(20):
                with db.write() as session:
                    session.execute(
                        text("INSERT INTO app_settings VALUES (:k, 'v', '2026-01-01 00:00:00')"),
                        {"k": f"{i}-{j}"},
                    )
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with sqlite3.connect(tmp_path / "zfs_sync.db") as conn:
        assert conn.execute("SELECT count(*) FROM app_settings").fetchone()[0] == 160
    db.dispose()


def test_event_ids_go_past_32_bits(witness: Any) -> None:
    """The event log is append-only for the witness's whole life: its ids are 64-bit."""
    from zfs_sync.storage.events import record_event

    far = 2**33
    with witness.db.write() as session:
        if witness.db.is_sqlite:
            session.execute(text("INSERT INTO events (id, created_at, type, severity, message, "
                                 "data) VALUES (:id, '2026-01-01 00:00:00.000000', 'test', "
                                 "'info', 'far', '{}')"), {"id": far})
        else:
            session.execute(text("SELECT setval(pg_get_serial_sequence('events', 'id'), :id)"),
                            {"id": far})
        record_event(session, "test.next", "after a long life")
    events = witness.client.get("/api/v1/events", params={"type": "test.next"}).json()
    assert [e["id"] for e in events] == [far + 1]
