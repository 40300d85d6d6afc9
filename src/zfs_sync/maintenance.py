"""Database maintenance: backup, restore, check, vacuum, analyze.

SQLite uses its online backup API (consistent while agents write, WAL included),
``PRAGMA integrity_check``, ``VACUUM`` and ``ANALYZE``. For PostgreSQL the witness checks
connectivity and migrations, runs VACUUM/ANALYZE, and prints the ``pg_dump``/``psql``
commands for backup and restore (those belong to PostgreSQL's own tools).

A running witness holds an exclusive ``flock`` on ``<database>.witness.lock``; ``restore``
refuses while it is held, so a backup is never copied under a live witness.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from zfs_sync.storage.db import Database, sqlite_path


class MaintenanceError(Exception):
    """The operation cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    lines: list[str]


def lock_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".witness.lock")


@contextmanager
def witness_lock(db: Database) -> Iterator[None]:
    """Held by ``serve``/``monitor`` for their lifetime (SQLite only; nothing on PostgreSQL)."""
    path = sqlite_path(db.url)
    if path is None:
        yield
        return
    with open(lock_path(path), "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MaintenanceError(
                f"another witness is already using {path}; one witness per SQLite database "
                "(use PostgreSQL to run several)") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sqlite_file(db: Database) -> Path:
    path = sqlite_path(db.url)
    if path is None:
        raise MaintenanceError("not a SQLite database file")
    return path


def pg_command(db: Database, tool: str, target: Path) -> str:
    url = make_url(db.url)
    args = [tool]
    if url.host:
        args += ["-h", url.host]
    if url.port:
        args += ["-p", str(url.port)]
    if url.username:
        args += ["-U", url.username]
    args.append(url.database or "")
    redirect = ">" if tool == "pg_dump" else "<"
    return " ".join(args) + f" {redirect} {target}"


def backup(db: Database, target: Path) -> str | None:
    """Copy a consistent snapshot of a live SQLite database to ``target``.

    Returns None when done, or (PostgreSQL) the command to run.
    """
    if not db.is_sqlite:
        return pg_command(db, "pg_dump", target)
    source = _sqlite_file(db)
    if target.exists():
        raise MaintenanceError(f"{target} exists; choose a new file name")
    target.parent.mkdir(parents=True, exist_ok=True)
    _copy_sqlite(source, target)
    return None


def _copy_sqlite(source: Path, target: Path) -> None:
    src = sqlite3.connect(str(source), timeout=30)
    dst = sqlite3.connect(str(target))
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def restore(db: Database, backup_file: Path) -> str | None:
    """Replace the SQLite database with ``backup_file`` (refused while a witness runs)."""
    if not db.is_sqlite:
        return pg_command(db, "psql", backup_file)
    target = _sqlite_file(db)
    if not backup_file.is_file():
        raise MaintenanceError(f"{backup_file} is not a file")
    problems = sqlite_integrity(backup_file)
    if problems != ["ok"]:
        raise MaintenanceError(f"{backup_file} fails the integrity check: {'; '.join(problems)}")
    with witness_lock(db):
        db.dispose()
        _copy_sqlite(backup_file, target)
    return None


def sqlite_integrity(path: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return [row[0] for row in conn.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    finally:
        conn.close()


def check(db: Database) -> CheckResult:
    """Integrity (SQLite) or connectivity (PostgreSQL), and the migration state."""
    lines: list[str] = []
    ok = True
    if db.is_sqlite:
        result = sqlite_integrity(_sqlite_file(db))
        ok = result == ["ok"]
        lines.append("integrity_check: " + "; ".join(result))
        if not ok:
            return CheckResult(False, lines)
    else:
        try:
            db.ping()
            lines.append("connection: ok")
        except Exception as exc:  # any driver error is the answer here
            return CheckResult(False, [f"connection: failed ({exc.__class__.__name__}: {exc})"])
    current, head = db.current_revision(), db.head_revision()
    at_head = current == head
    ok = ok and at_head
    lines.append(f"migrations: at {current}, head {head}"
                 + ("" if at_head else " (run `zfs-sync db upgrade`)"))
    return CheckResult(ok, lines)


def _run_outside_transaction(db: Database, statement: str) -> None:
    if db.is_sqlite:
        conn = sqlite3.connect(str(_sqlite_file(db)), timeout=30, isolation_level=None)
        try:
            conn.execute(statement)
            # Move the rewritten pages into the file, so the space is really given back.
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        return
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as pg:
        pg.execute(text(statement))


def vacuum(db: Database) -> None:
    """Reclaim space (SQLite VACUUM rewrites the file; PostgreSQL plain VACUUM)."""
    _run_outside_transaction(db, "VACUUM")


def analyze(db: Database) -> None:
    """Refresh the query planner's statistics."""
    _run_outside_transaction(db, "ANALYZE")


def file_size(db: Database) -> int | None:
    path = sqlite_path(db.url)
    return os.path.getsize(path) if path is not None and path.exists() else None
