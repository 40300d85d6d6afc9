"""PostgreSQL restarted under load: while it is down the witness answers clean 503s with
Retry-After at once, and afterwards the same witness process serves again, with no
acknowledged write lost.

The test starts a private cluster of its own (``initdb`` + ``pg_ctl`` on a free port), never
the shared one. The full form (several restarts, figures) is ``bench/pg_restart.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.faults import (
    ACKED,
    PrivatePostgres,
    postgres_bin_dir,
    run_pg_restart_campaign,
)

CLIENT_TIMEOUT = 15.0


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    cluster = PrivatePostgres(bin_dir)
    try:
        cluster.init()
        yield cluster
    finally:
        cluster.destroy()


def test_postgres_restart_gives_503_then_recovers(
    tmp_path: Path, private_postgres: PrivatePostgres
) -> None:
    figures = run_pg_restart_campaign(
        tmp_path / "witness", private_postgres, restarts=2, down_seconds=3.0,
        load_seconds=2.0, timeout=CLIENT_TIMEOUT, full=2, batch=1, groups=1, readers=2,
        datasets=5, snapshots=50,
    )
    print(figures.summary())
    assert figures.same_process, "the witness must survive the database restart"
    assert figures.unavailable, "no request saw the database down: the test did not bite"
    assert figures.malformed_503 == []
    # Nothing but 2xx and clean 503s: no 500, no dropped connection, no client timeout
    # (which would mean a request hung for CLIENT_TIMEOUT seconds).
    assert figures.errors == []
    assert all(r.seconds < CLIENT_TIMEOUT for r in figures.unavailable)
    assert len(figures.recovery_seconds) == 2
    assert figures.problems == []  # no acknowledged write lost, nothing partial
    writes_after_last_restart = [
        r for r in figures.records[-20:] if r.kind != "read" and r.outcome == ACKED
    ]
    assert writes_after_last_restart, "writes must succeed again after the restart"


def test_only_transient_database_errors_become_503() -> None:
    import sqlite3

    import psycopg
    from sqlalchemy.exc import IntegrityError, OperationalError

    from zfs_sync.api.errors import database_unavailable

    def wrapped(cls: type, orig: Exception) -> Exception:
        return cls("SELECT 1", {}, orig)  # type: ignore[no-any-return]

    assert database_unavailable(
        wrapped(OperationalError, sqlite3.OperationalError("database is locked")))
    assert database_unavailable(
        wrapped(OperationalError, psycopg.OperationalError("connection refused")))
    assert database_unavailable(
        wrapped(OperationalError, psycopg.errors.AdminShutdown("terminating connection")))
    # A schema bug is still a bug (500), not "try again later".
    assert not database_unavailable(
        wrapped(OperationalError, sqlite3.OperationalError("no such table: systems")))
    assert not database_unavailable(
        wrapped(IntegrityError, sqlite3.IntegrityError("UNIQUE constraint failed")))
    assert not database_unavailable(ValueError("not a database error"))
