"""Fuzz the witness API, the full form of ``tests/reliability/test_fuzz_api.py``.

The same code as the CI test (schemathesis over ``/openapi.json``, in-process, every
operation on its own fresh database seeded with a small fleet), with many more examples:
both runs (anonymous, then with the admin token and a system key) and both generation modes
(schema-valid and schema-violating data). It prints the operations covered, the examples
run, the status codes seen, and every distinct failure; the exit status is 1 if any.

    .venv/bin/python bench/fuzz.py                      # 200 examples per operation and mode
    .venv/bin/python bench/fuzz.py --examples 20        # a quicker pass
    .venv/bin/python bench/fuzz.py --only snapshots     # operations whose label contains it
    .venv/bin/python bench/fuzz.py --postgres postgresql://postgres@127.0.0.1:5432/fuzz
    .venv/bin/python bench/fuzz.py --seed 7             # other examples than CI's

``--postgres`` empties every table of that database before each operation: give it a
database of its own (it is created when missing).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.reliability.test_fuzz_api import Databases, Report, fuzz_all  # noqa: E402
from zfs_sync.storage.db import Database, normalise_url  # noqa: E402


def _postgres(url: str) -> str:
    """Create the database when missing and bring it to the newest migration."""
    target = make_url(normalise_url(url))
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        found = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"),
                             {"name": target.database}).first()
        if found is None:
            conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    admin.dispose()
    rendered = target.render_as_string(hide_password=False)
    db = Database(rendered)
    db.upgrade()
    db.dispose()
    return rendered


def _print(name: str, report: Report, seconds: float) -> None:
    statuses: dict[str, dict[int, int]] = defaultdict(dict)
    for (label, status), count in report.statuses.items():
        statuses[label][status] = count
    print(f"\n## {name}: {len(report.operations)} operations, {report.examples} examples, "
          f"{len(report.failures)} distinct failures, {seconds:.0f} s")
    for label in report.operations:
        seen = ", ".join(f"{s}: {n}" for s, n in sorted(statuses[label].items()))
        print(f"  {label:<58} {report.seconds.get(label, 0):6.1f} s  {seen}")
    for (label, title, _), message in sorted(report.failures.items()):
        print(f"\n### FAILURE {label}: {title}\n{message}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=200,
                        help="examples per operation and generation mode (default 200)")
    parser.add_argument("--only", default="", help="fuzz only operations whose label has this")
    parser.add_argument("--postgres", metavar="URL", help="run on this PostgreSQL database")
    parser.add_argument("--seed", type=int, default=None,
                        help="a hypothesis seed (default: derandomized, as in CI)")
    parser.add_argument("--runs", default="anonymous,credentials",
                        help="which runs, comma-separated (default: both)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # 401s and lock-outs are expected by the thousand
    workdir = Path(tempfile.mkdtemp(prefix="zfs-sync-fuzz-"))
    template: Path | None = None
    postgres = _postgres(args.postgres) if args.postgres else None
    if postgres is None:
        template = workdir / "template.db"
        db = Database(f"sqlite:///{template}")
        db.upgrade()
        db.dispose()
    print(f"fuzzing on {'PostgreSQL' if postgres else 'SQLite'}, {args.examples} examples per "
          f"operation and mode, seed {args.seed if args.seed is not None else 'fixed'}")
    total_failures = 0
    total_examples = 0
    started_all = time.monotonic()
    for name in args.runs.split(","):
        started = time.monotonic()
        databases = Databases(workdir, sqlite_template=template, postgres_url=postgres)
        report = fuzz_all(databases, credentials=name == "credentials",
                          max_examples=args.examples,
                          only=lambda label: args.only in label, seed=args.seed)
        _print(name, report, time.monotonic() - started)
        total_failures += len(report.failures)
        total_examples += report.examples
    print(f"\nTotal: {total_examples} examples, {total_failures} distinct failures, "
          f"{time.monotonic() - started_all:.0f} s")
    return 1 if total_failures else 0


if __name__ == "__main__":
    sys.exit(main())
