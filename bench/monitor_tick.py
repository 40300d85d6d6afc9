"""Monitor tick benchmark: what one tick costs on a fleet, and how long it holds the writer.

The monitor re-plans every enabled group on each tick (``check_late``: plan, persist states
and conflicts, flip late markers), ``LATE_BATCH`` groups per write transaction. On SQLite each
such transaction is ``BEGIN IMMEDIATE``: another writer (a report, a heartbeat) waits for at
most one batch.

The fleet comes from ``bench/fleet.py`` (``--systems`` hosts x ``--datasets`` x
``--snapshots``) and is loaded through the API in-process (register, heartbeat, full-state
report, group creation), on a fresh SQLite file or, with ``--database-url``, on a fresh
PostgreSQL database created on that server and dropped afterwards. Systems are split into
``--groups`` directional groups: the first host of each is the hub; each target holds the hub's
history minus its newest 1-4 snapshots, so every edge owes an incremental (and is late: the
fleet's snapshots are months old). Ticks run with a pinned ``now``. It prints:

- the first tick (every edge becomes late: one event each) and the steady ticks after it,
  p50 and max of the whole tick, and the CPU time this process spent on them (on SQLite all
  the work is in this process, so that figure does not depend on other load on the host);
- one batch's ``check_late`` write transaction (p50 / max), the time another writer may wait;
- a heartbeat's latency while a tick runs (SQLite: it waits for the tick's transaction).

    .venv/bin/python bench/monitor_tick.py                      # 200 systems, 50 groups
    .venv/bin/python bench/monitor_tick.py --systems 20 --groups 5 --ticks 3    # quick
    .venv/bin/python bench/monitor_tick.py --database-url postgresql://postgres@127.0.0.1/test
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fleet import Host, make_fleet  # noqa: E402

from zfs_sync.storage.db import Database, normalise_url  # noqa: E402

ADMIN_TOKEN = "bench-monitor-admin-token-0123456789"
ADMIN = {"X-API-Key": ADMIN_TOKEN}


@contextmanager
def fresh_database(database_url: str | None) -> Iterator[str]:
    """A fresh SQLite file, or a fresh database on the given PostgreSQL server."""
    if not database_url:
        with tempfile.TemporaryDirectory(prefix="zfs-sync-bench-") as tmp:
            yield f"sqlite:///{tmp}/zfs_sync.db"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(normalise_url(database_url))
    name = f"zfs_sync_bench_tick_{os.getpid()}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def lagging_copy(hub: Host, target: Host, lag: int) -> None:
    """The target holds the hub's history (same guids) under its own pool, minus ``lag``."""
    target.snapshots = {}
    for dataset, items in hub.snapshots.items():
        mine = dataset.replace(hub.pool + "/", target.pool + "/", 1)
        target.snapshots[mine] = [{**item, "dataset": mine} for item in items[:-lag]]
    target.datasets = list(target.snapshots)


def load_fleet(client: Any, hosts: list[Host], groups: int) -> int:
    """Register, heartbeat and report every host; create the groups. Returns the edge count."""
    size = max(2, len(hosts) // groups)
    ids: list[str] = []
    keys: dict[str, dict[str, str]] = {}
    for index, host in enumerate(hosts):
        if index % size:
            lagging_copy(hosts[index - index % size], host, 1 + index % 4)
        response = client.post("/api/v1/systems", headers=ADMIN,
                               json={"hostname": host.hostname, "platform": "linux"})
        response.raise_for_status()
        ids.append(response.json()["id"])
        keys[ids[-1]] = {"X-API-Key": response.json()["api_key"]}
        client.post(f"/api/v1/systems/{ids[-1]}/heartbeat", headers=keys[ids[-1]])
        client.put(f"/api/v1/systems/{ids[-1]}/snapshots", headers=keys[ids[-1]],
                   json=host.report()).raise_for_status()
    edges = 0
    for number, start in enumerate(range(0, len(hosts) - 1, size)):
        members = list(range(start, min(start + size, len(hosts))))
        if len(members) < 2 or number >= groups:
            break
        body = {"name": f"bench-{number:03d}", "directional": True,
                "hub_system_id": ids[start], "sync_interval_seconds": 3600,
                "members": [{"system_id": ids[i], "root": hosts[i].pool} for i in members]}
        client.post("/api/v1/sync-groups", headers=ADMIN, json=body).raise_for_status()
        edges += (len(members) - 1) * len(hosts[start].datasets)
    return edges


def timed_check_late(db: Database, settings: Any, now: datetime) -> list[float]:
    """Each batch's write transaction, as a tick runs them."""
    from zfs_sync.monitor import LATE_BATCH, check_late, enabled_groups

    with db.read() as session:
        group_ids = enabled_groups(session)
    held = []
    for start in range(0, len(group_ids), LATE_BATCH):
        began = time.perf_counter()
        with db.write() as session:
            check_late(session, settings, now, group_ids[start : start + LATE_BATCH])
        held.append(time.perf_counter() - began)
    return held


def heartbeat_during_tick(db: Database, settings: Any, client: Any, system_id: str,
                          key: dict[str, str], now: datetime) -> tuple[float, float]:
    """(tick seconds, heartbeat seconds) with the heartbeat sent while the tick runs."""
    from zfs_sync.monitor import tick

    done: dict[str, float] = {}

    def run_tick() -> None:
        began = time.perf_counter()
        tick(db, settings, now)
        done["tick"] = time.perf_counter() - began

    thread = threading.Thread(target=run_tick)
    thread.start()
    time.sleep(0.05)  # let the tick reach its planning transaction
    began = time.perf_counter()
    client.post(f"/api/v1/systems/{system_id}/heartbeat", headers=key).raise_for_status()
    beat = time.perf_counter() - began
    thread.join()
    return done["tick"], beat


def summary(values: list[float]) -> str:
    return (f"p50 {statistics.median(values) * 1000:7.0f} ms   "
            f"max {max(values) * 1000:7.0f} ms   (n={len(values)})")


def run(args: argparse.Namespace) -> None:
    from fastapi.testclient import TestClient

    from zfs_sync.api.app import create_app
    from zfs_sync.api.deps import get_now
    from zfs_sync.config import load_settings
    from zfs_sync.monitor import tick

    hosts = make_fleet(args.systems, args.datasets, args.snapshots, args.seed)
    now = datetime.now(UTC).replace(microsecond=0)
    with fresh_database(args.database_url) as url, tempfile.TemporaryDirectory() as data:
        db = Database(url)
        db.upgrade()
        settings = load_settings(env={}, database_url=url, data_dir=data,
                                 admin_token=ADMIN_TOKEN, heartbeat_timeout_seconds=86400)
        app = create_app(settings, db=db)
        app.dependency_overrides[get_now] = lambda: now
        with TestClient(app) as client:
            began = time.perf_counter()
            edges = load_fleet(client, hosts, args.groups)
            snapshots = sum(h.snapshot_count for h in hosts)
            print(f"{'PostgreSQL' if url.startswith('postgresql') else 'SQLite'}: "
                  f"{len(hosts)} systems, {args.groups} groups, {edges} edges, "
                  f"{snapshots} snapshots (loaded in {time.perf_counter() - began:.1f} s)")

            first = tick(db, settings, now)
            print(f"first tick       {first.seconds * 1000:7.0f} ms   "
                  f"({len(first.late)} edges became late)")
            steady, cpu = [], []
            for i in range(args.ticks):
                cpu_began = time.process_time()
                steady.append(tick(db, settings, now + timedelta(seconds=30 * (i + 1))).seconds)
                cpu.append(time.process_time() - cpu_began)
            print(f"steady ticks     {summary(steady)}")
            print(f"  their CPU time {summary(cpu)}   (this process; on a busy host the "
                  "wall time above is longer)")
            held = [t for i in range(args.ticks)
                    for t in timed_check_late(db, settings, now + timedelta(seconds=30 * (i + 1)))]
            print(f"one batch's txn  {summary(held)}")
            system_id = client.get("/api/v1/systems", params={"limit": 1}).json()[0]["id"]
            key_response = client.post(f"/api/v1/systems/{system_id}/api-key/rotate",
                                       headers=ADMIN)
            key = {"X-API-Key": key_response.json()["api_key"]}
            tick_s, beat_s = heartbeat_during_tick(db, settings, client, system_id, key, now)
            print(f"heartbeat during a tick: {beat_s * 1000:.0f} ms "
                  f"(that tick: {tick_s * 1000:.0f} ms)")
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", type=int, default=200)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--datasets", type=int, default=10)
    parser.add_argument("--snapshots", type=int, default=48)
    parser.add_argument("--ticks", type=int, default=10, help="Steady ticks to time.")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", help="A PostgreSQL server URL; a fresh database is "
                        "created on it (and dropped afterwards).")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
