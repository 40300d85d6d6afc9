"""Crash bench: SIGKILL the witness under load, many times, and audit what survived.

Starts ``zfs-sync serve`` (SQLite in a temporary directory unless ``--database-url`` names a
PostgreSQL server, on which a fresh database is created and dropped afterwards), drives
concurrent clients (full-state reports, batch reports, sync-group updates; each owns its own
system or group and sends monotonically versioned rounds), kills the witness with SIGKILL
after a random delay, restarts it on the same database and port, and audits every client's
stored state after each restart. It ends with ``zfs-sync db check``. It prints figures and
exits 1 if anything acknowledged was lost or anything was stored partially.

    .venv/bin/python bench/crash.py                          # 20 kills on SQLite
    .venv/bin/python bench/crash.py --kills 5 --snapshots 50
    .venv/bin/python bench/crash.py --database-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.reliability.faults import run_crash_campaign  # noqa: E402


def _fresh_postgres_database(url: str) -> tuple[str, str]:
    """Create an empty database on the server of ``url``; return (its URL, its name)."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"zfs_sync_crash_{os.getpid()}"
    base = make_url(url)
    with psycopg.connect(base.set(drivername="postgresql").render_as_string(False),
                         autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return base.set(database=name).render_as_string(hide_password=False), name


def _drop_postgres_database(url: str, name: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(url).set(drivername="postgresql")
    with psycopg.connect(base.render_as_string(False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--database-url", help="a PostgreSQL server URL (default: SQLite)")
    parser.add_argument("--full-clients", type=int, default=3)
    parser.add_argument("--batch-clients", type=int, default=2)
    parser.add_argument("--group-clients", type=int, default=1)
    parser.add_argument("--datasets", type=int, default=20)
    parser.add_argument("--snapshots", type=int, default=200, help="per dataset")
    parser.add_argument("--min-delay", type=float, default=0.5)
    parser.add_argument("--max-delay", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="zfs-sync-crash-"))
    data_dir = tmp / "witness"
    url, pg_name = f"sqlite:///{data_dir}/zfs_sync.db", None
    if args.database_url:
        url, pg_name = _fresh_postgres_database(args.database_url)
    backend = "PostgreSQL" if pg_name else "SQLite"
    print(f"{args.kills} kills on {backend}; clients: {args.full_clients} full-state "
          f"({args.datasets} datasets x {args.snapshots} snapshots), {args.batch_clients} batch, "
          f"{args.group_clients} group", flush=True)
    began = time.monotonic()
    try:
        figures = run_crash_campaign(
            data_dir, url, args.kills, seed=args.seed, min_delay=args.min_delay,
            max_delay=args.max_delay, progress=lambda line: print(line, flush=True),
            full=args.full_clients, batch=args.batch_clients, groups=args.group_clients,
            datasets=args.datasets, snapshots=args.snapshots,
        )
    finally:
        if pg_name and args.database_url:
            _drop_postgres_database(args.database_url, pg_name)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{backend}, {time.monotonic() - began:.0f} s")
    print(figures.summary())
    return 0 if not figures.problems and figures.check_ok else 1


if __name__ == "__main__":
    sys.exit(main())
