"""db backup / restore / check / vacuum / analyze, and the guide's sqlite3 commands."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import threading
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from tests.ops.witness_process import serve
from zfs_sync.cli import main

ADMIN_TOKEN = "maintenance-admin-token-0123"


def run(data_dir: Path, *args: str) -> tuple[int, str]:
    env = {"ZFS_SYNC_DATA_DIR": str(data_dir), "ZFS_SYNC_ADMIN_TOKEN": ADMIN_TOKEN}
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def snapshot_body(n: int) -> dict[str, object]:
    return {
        "snapshots": [
            {
                "name": f"s{i}",
                "dataset": "tank/data",
                "pool": "tank",
                "timestamp": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
                "guid": str(1000 + i),
                "createtxg": i + 1,
            }
            for i in range(n)
        ]
    }


def test_backup_under_load_restores_every_acknowledged_snapshot(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    env = {"ZFS_SYNC_ADMIN_TOKEN": ADMIN_TOKEN}
    with serve(data, **env) as url:
        admin = {"X-API-Key": ADMIN_TOKEN}
        reg = httpx.post(
            f"{url}/api/v1/systems",
            json={"hostname": "h1", "platform": "linux"},
            headers=admin,
            timeout=10,
        ).json()
        key = {"X-API-Key": reg["api_key"]}
        acknowledged: list[int] = []
        stop = threading.Event()

        def writer() -> None:
            n = 1
            while not stop.is_set() and n < 400:
                response = httpx.put(
                    f"{url}/api/v1/systems/{reg['id']}/snapshots",
                    json=snapshot_body(n),
                    headers=key,
                    timeout=30,
                )
                if response.status_code == 200:
                    acknowledged.append(n)
                n += 1

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            while len(acknowledged) < 5:
                stop.wait(0.05)
            before = acknowledged[-1]
            code, out = run(data, "db", "backup", str(tmp_path / "backup.db"))
            assert code == 0, out
            # The witness holds the database: restore is refused while it runs.
            code, out = run(data, "db", "restore", str(tmp_path / "backup.db"))
            assert code != 0 and "another witness" in out
        finally:
            stop.set()
            thread.join(60)
        # The guide's commands against the live database (WAL mode, witness running).
        db_file = data / "zfs_sync.db"
        if shutil.which("sqlite3"):
            for sql in (f".backup {tmp_path / 'guide.db'}", "VACUUM;", "ANALYZE;"):
                subprocess.run(["sqlite3", str(db_file), sql], check=True, timeout=60)
            out = subprocess.run(
                ["sqlite3", str(db_file), "PRAGMA integrity_check;"],
                check=True,
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout
            assert out.strip() == "ok"
        else:
            conn = sqlite3.connect(db_file, timeout=30, isolation_level=None)
            conn.backup(sqlite3.connect(tmp_path / "guide.db"))
            conn.execute("VACUUM")
            conn.execute("ANALYZE")
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            conn.close()

    code, out = run(data, "db", "restore", str(tmp_path / "backup.db"))
    assert code == 0, out
    code, out = run(data, "db", "check")
    assert code == 0 and "integrity_check: ok" in out and "migrations: at" in out, out
    conn = sqlite3.connect(data / "zfs_sync.db")
    names = {row[0] for row in conn.execute("SELECT name FROM snapshots")}
    conn.close()
    assert {f"s{i}" for i in range(before)} <= names


def test_check_vacuum_analyze(tmp_path: Path) -> None:
    code, out = run(tmp_path, "db", "upgrade")
    assert code == 0, out
    for command in ("vacuum", "analyze", "check"):
        code, out = run(tmp_path, "db", command)
        assert code == 0, out
    for leftover in tmp_path.glob("zfs_sync.db-*"):
        leftover.unlink()
    (tmp_path / "zfs_sync.db").write_bytes(b"garbage" * 100)
    code, out = run(tmp_path, "db", "check")
    assert code == 1, out


def test_restore_refuses_a_corrupt_backup(tmp_path: Path) -> None:
    run(tmp_path, "db", "upgrade")
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database" * 100)
    code, out = run(tmp_path, "db", "restore", str(bad))
    assert code != 0 and "integrity" in out


def test_backup_refuses_to_overwrite(tmp_path: Path) -> None:
    run(tmp_path, "db", "upgrade")
    target = tmp_path / "b.db"
    target.write_text("x")
    code, out = run(tmp_path, "db", "backup", str(target))
    assert code != 0 and "exists" in out


@pytest.mark.postgres
def test_postgres_commands(postgres_url: str, tmp_path: Path) -> None:
    env = {
        "ZFS_SYNC_DATABASE_URL": postgres_url,
        "ZFS_SYNC_ADMIN_TOKEN": ADMIN_TOKEN,
        "ZFS_SYNC_DATA_DIR": str(tmp_path),
    }
    runner = CliRunner()
    out = runner.invoke(main, ["db", "backup", str(tmp_path / "x.sql")], env=env).output
    assert "pg_dump" in out and "x.sql" in out
    out = runner.invoke(main, ["db", "restore", __file__], env=env).output
    assert "psql" in out
    for command in ("check", "vacuum", "analyze"):
        result = runner.invoke(main, ["db", command], env=env)
        assert result.exit_code == 0, result.output
