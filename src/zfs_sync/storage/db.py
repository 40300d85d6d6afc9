"""Engine, sessions and schema migration for SQLite and PostgreSQL.

SQLite runs in WAL mode with a busy timeout and foreign keys on. Write transactions start
with ``BEGIN IMMEDIATE`` so that concurrent writers queue on the busy timeout instead of
failing with "database is locked" when a read transaction tries to upgrade.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session

from zfs_sync.plan_cache import PLAN_CACHE, PlanCache
from zfs_sync.storage import revision

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# An arbitrary constant: the key of the advisory lock that serialises migrations.
MIGRATION_LOCK_KEY = 0x7A667373  # "zfss"
SQLITE_BUSY_TIMEOUT_MS = 30_000
WRITER_CACHE_KIB = 32_768  # page cache of each writer connection (readers: SQLite's 2 MiB)
# How long a writer waits for its turn among this process's writers before a 503.
SQLITE_WRITER_QUEUE_TIMEOUT_S = 120
# A request must not hang on an unreachable PostgreSQL: fail the connect and answer 503.
POSTGRES_CONNECT_TIMEOUT_S = 5


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 (SQLAlchemy would otherwise pick psycopg2)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


class Database:
    """One engine plus the two kinds of session the code uses: ``read()`` and ``write()``."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            self.engine = _sqlite_engine(self.url, echo, pool_size=8, max_overflow=24)
            # Writers take turns (the lock below), so a few connections serve them all. They
            # are their own pool for their larger page cache: a full report writes tens of
            # thousands of rows, and with SQLite's default 2 MiB cache it spills pages to the
            # WAL before the commit and reads the indexes again for every report
            # (bench/ingest.py: about 10 % of a report's time).
            self._writer_engine = _sqlite_engine(
                self.url, echo, pool_size=2, max_overflow=4, cache_kib=WRITER_CACHE_KIB
            )
        else:
            # pre_ping replaces connections a PostgreSQL restart closed, so the first request
            # after the restart does not fail on a dead pooled connection.
            self.engine = create_engine(
                self.url,
                echo=echo,
                pool_pre_ping=True,
                pool_size=10,
                max_overflow=20,
                connect_args={"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S},
            )
            self._writer_engine = self.engine
        self._writer = self._writer_engine.execution_options(zfs_sync_write=True)
        self._write_lock = threading.RLock() if self.is_sqlite else None
        self.plan_cache = PlanCache()

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            session.info[PLAN_CACHE] = self.plan_cache
            yield session

    @contextmanager
    def write(self, *, plan_neutral: bool = False) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on any exception.

        It ends by replacing the plan revision (``storage/revision.py``), which tells cached
        plans they may be stale, unless it is ``plan_neutral`` (it writes nothing plans read)
        and nothing in it called ``revision.inputs_changed``.

        On SQLite the process's writers queue on a lock before ``BEGIN IMMEDIATE``: SQLite's
        own busy handler polls, so under load a waiting writer can lose every race for the
        busy timeout and fail with "database is locked". The lock hands the writer over to
        one waiting thread at a time; the busy timeout is left for other processes.
        """
        if self._write_lock is None:
            with self._transaction(plan_neutral) as session:
                yield session
            return
        if not self._write_lock.acquire(timeout=SQLITE_WRITER_QUEUE_TIMEOUT_S):
            raise PoolTimeoutError(
                f"no turn to write within {SQLITE_WRITER_QUEUE_TIMEOUT_S} s (SQLite writers "
                "are serial and the queue is long)"
            )
        try:
            with self._transaction(plan_neutral) as session:
                yield session
        finally:
            self._write_lock.release()

    @contextmanager
    def _transaction(self, plan_neutral: bool) -> Iterator[Session]:
        with Session(self._writer, expire_on_commit=False) as session, session.begin():
            session.info[PLAN_CACHE] = self.plan_cache
            if not plan_neutral:
                revision.inputs_changed(session)
            yield session
            if revision.changed(session):
                revision.replace(session)

    def dispose(self) -> None:
        self.engine.dispose()
        if self._writer_engine is not self.engine:
            self._writer_engine.dispose()

    # -- schema -------------------------------------------------------------------------

    def upgrade(self) -> None:
        """Apply migrations up to head (under an advisory lock on PostgreSQL)."""
        with self.engine.connect() as conn:
            if not self.is_sqlite:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
                conn.commit()
            try:
                cfg = alembic_config(self.url)
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                conn.commit()
            finally:
                if not self.is_sqlite:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
                    conn.commit()

    def current_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str | None:
        return ScriptDirectory.from_config(alembic_config(self.url)).get_current_head()

    def is_at_head(self) -> bool:
        return self.current_revision() == self.head_revision()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _sqlite_engine(
    url: str, echo: bool, *, pool_size: int, max_overflow: int, cache_kib: int | None = None
) -> Engine:
    engine = create_engine(
        url,
        echo=echo,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        pool_size=pool_size,
        max_overflow=max_overflow,
    )
    _install_sqlite_hooks(engine, cache_kib)
    return engine


def _install_sqlite_hooks(engine: Engine, cache_kib: int | None = None) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own is deferred).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        if cache_kib is not None:
            cursor.execute(f"PRAGMA cache_size=-{cache_kib}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("zfs_sync_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def prepare_sqlite_file(url: str) -> None:
    """Create the database directory; move stale ``-wal``/``-shm`` files of a deleted DB aside.

    SQLite would otherwise apply an old WAL to the new, empty database file.
    """
    path = sqlite_path(normalise_url(url))
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in ("-wal", "-shm", "-journal"):
        stale = path.with_name(path.name + suffix)
        if stale.exists():
            target = stale.with_name(f"{stale.name}.stale-{stamp}")
            stale.rename(target)
            log.warning(
                "database %s is missing but %s was left beside it; moved it to %s "
                "and creating a new database",
                path,
                stale.name,
                target.name,
            )
