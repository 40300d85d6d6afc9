"""PostgreSQL restart bench: stop the database under load, keep it down, start it again.

Starts a private PostgreSQL cluster (``initdb`` + ``pg_ctl`` on a free port, as the
``postgres`` user when run as root; never the shared cluster) and a witness on it, drives
writers (full-state and batch reports, group updates) and readers, and ``--restarts`` times
stops PostgreSQL (``pg_ctl stop -m fast``), waits ``--down-seconds`` and starts it again. The
witness process is never restarted. It prints the 503s seen (and whether each carried
Retry-After and the JSON error body), their latency, the recovery time after each restart,
every other error, and the audit of the writes; exits 1 on any error other than a clean 503,
a lost or partial write, or a witness that did not survive.

    .venv/bin/python bench/pg_restart.py                   # 5 restarts, 3 s down each
    .venv/bin/python bench/pg_restart.py --restarts 2 --down-seconds 5
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.reliability.faults import (  # noqa: E402
    PrivatePostgres,
    postgres_bin_dir,
    run_pg_restart_campaign,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--down-seconds", type=float, default=3.0)
    parser.add_argument("--load-seconds", type=float, default=3.0,
                        help="load before each stop and after the last start")
    parser.add_argument("--timeout", type=float, default=15.0, help="client timeout, seconds")
    parser.add_argument("--full-clients", type=int, default=2)
    parser.add_argument("--batch-clients", type=int, default=1)
    parser.add_argument("--readers", type=int, default=3)
    parser.add_argument("--datasets", type=int, default=10)
    parser.add_argument("--snapshots", type=int, default=100, help="per dataset")
    args = parser.parse_args()

    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        print("PostgreSQL server binaries (initdb, pg_ctl) are not installed", file=sys.stderr)
        return 2
    cluster = PrivatePostgres(bin_dir)
    tmp = Path(tempfile.mkdtemp(prefix="zfs-sync-pg-restart-"))
    began = time.monotonic()
    try:
        cluster.init()
        print(f"private PostgreSQL ({bin_dir.parent.name}) on port {cluster.port}; "
              f"{args.restarts} restarts, {args.down_seconds:g} s down each", flush=True)
        figures = run_pg_restart_campaign(
            tmp / "witness", cluster, args.restarts, down_seconds=args.down_seconds,
            load_seconds=args.load_seconds, timeout=args.timeout,
            progress=lambda line: print(line, flush=True), full=args.full_clients,
            batch=args.batch_clients, groups=1, readers=args.readers,
            datasets=args.datasets, snapshots=args.snapshots,
        )
    finally:
        cluster.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{time.monotonic() - began:.0f} s")
    print(figures.summary())
    ok = (figures.same_process and not figures.errors and not figures.malformed_503
          and not figures.problems and figures.unavailable)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
