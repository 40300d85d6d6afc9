"""Planning benchmark: sync instructions and group status of a big fleet, over HTTP.

Builds a fleet straight into a fresh SQLite database (schema by ``Database.upgrade()``,
snapshot rows inserted with SQL, then ``refresh_dataset_summaries`` per system, as every
snapshot write does), starts ``zfs-sync serve`` on 127.0.0.1 on it and measures:

- ``GET /api/v1/sync/instructions/{target}`` for one target (target: p50 < 50 ms);
- ``GET /api/v1/sync/groups/{id}/status`` (target: p50 < 200 ms);
- both again right after a write that re-plans nothing (cold: the plan cache of
  ``plan_cache.py`` cannot answer, so each call plans afresh);
- both again right after the hub reports a new snapshot (the report's request re-plans the
  group, as every changed report does, so the reads find the plans cached), and the report's
  own duration;
- the growth check: the same two calls on 4 systems x 100 datasets with 100, 1,000 and
  5,000 snapshots per dataset, and how their p50 grows against the history length (it must
  grow no worse than linearly).

The fleet is ONE directional group: system 0 is the hub, every other system a target holding
the hub's history minus its newest 1 to 4 snapshots (so every edge owes an incremental). It
prints numbers and asserts nothing.

    .venv/bin/python bench/planning.py                 # 20 x 100 x 1,000 + growth 100/1,000/5,000
    .venv/bin/python bench/planning.py --quick         # small sizes, a few seconds
    .venv/bin/python bench/planning.py --systems 5 --snapshots 200 --growth-sizes 100,500
    .venv/bin/python bench/planning.py --quick --profile   # where the time goes (cProfile)
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import ADMIN_TOKEN, _free_port, _server_command, peak_rss_mib  # noqa: E402

from zfs_sync.storage.db import Database  # noqa: E402
from zfs_sync.storage.models import GroupMember, SyncGroup, System  # noqa: E402
from zfs_sync.storage.summaries import refresh_dataset_summaries  # noqa: E402

HUB_POOL, TARGET_POOL = "tank", "backup"
MAX_LAG = 4  # each target lacks the hub's newest 1..MAX_LAG snapshots of each dataset
_TWO_63, _TWO_64 = 2**63, 2**64
SNAPSHOT_COLUMNS = ("id", "system_id", "pool", "dataset", "name", "guid", "createtxg",
                    "timestamp", "size", "referenced", "created_at", "updated_at")


@dataclass
class Fleet:
    url: str
    hub: str
    targets: list[str]
    group: str
    snapshots: int  # rows inserted


def _sqlite_time(moment: datetime) -> str:
    """How SQLAlchemy stores a UTCDateTime on SQLite (naive UTC, microseconds)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _system_id(index: int) -> str:
    return str(uuid.UUID(int=(0x5157 << 112) | index))


def build_fleet(path: Path, systems: int, datasets: int, snapshots: int, seed: int = 1,
                analyze: bool = False) -> Fleet:
    """A fresh database with ``systems`` x ``datasets`` x ``snapshots`` (targets lagging)."""
    url = f"sqlite:///{path}"
    db = Database(url)
    db.upgrade()
    now = datetime.now(UTC)
    ids = [_system_id(i) for i in range(systems)]
    group_id = str(uuid.UUID(int=(0x6706 << 112) | seed))
    with db.write() as session:
        for index, system_id in enumerate(ids):
            session.add(System(
                id=system_id, hostname=f"bench-{index:03d}", platform="linux",
                ssh_hostname=f"bench-{index:03d}.example", ssh_user="zfs", ssh_port=22,
                zfs_path="zfs", meta={}, capabilities={}, last_seen=now,
                # online for the whole run without heartbeats
                heartbeat_timeout_seconds=30 * 86400, heartbeat_timeout_override=True,
                created_at=now, updated_at=now))
        session.flush()
        session.add(SyncGroup(
            id=group_id, name="bench", description="", enabled=True, sync_interval_seconds=3600,
            directional=True, hub_system_id=ids[0], datasets=[], snapshot_pattern="",
            allow_rollback=False, created_at=now, updated_at=now))
        session.flush()
        for index, system_id in enumerate(ids):
            session.add(GroupMember(group_id=group_id, system_id=system_id, added_at=now,
                                    root=HUB_POOL if index == 0 else TARGET_POOL))
    rows = _insert_snapshots(path, ids, datasets, snapshots, now, seed)
    names = {pool: [f"{pool}/data/ds{j:03d}" for j in range(datasets)]
             for pool in (HUB_POOL, TARGET_POOL)}
    with db.write() as session:
        for index, system_id in enumerate(ids):
            refresh_dataset_summaries(session, system_id,
                                      names[HUB_POOL if index == 0 else TARGET_POOL], now)
    db.dispose()
    conn = sqlite3.connect(path)
    try:
        if analyze:  # what `zfs-sync db analyze` does; a fresh database has no statistics
            conn.execute("ANALYZE")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return Fleet(url, ids[0], ids[1:], group_id, rows)


def _insert_snapshots(path: Path, ids: list[str], datasets: int, snapshots: int, now: datetime,
                      seed: int) -> int:
    rng = random.Random(seed)
    start = now - timedelta(hours=snapshots)
    stamps = [_sqlite_time(start + timedelta(hours=h)) for h in range(snapshots)]
    names = [f"autosnap_{start + timedelta(hours=h):%Y-%m-%d_%H:00:00}_hourly"
             for h in range(snapshots)]
    created = _sqlite_time(now)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    total = 0
    try:
        placeholders = ", ".join("?" for _ in SNAPSHOT_COLUMNS)
        sql = f"INSERT INTO snapshots ({', '.join(SNAPSHOT_COLUMNS)}) VALUES ({placeholders})"
        for j in range(datasets):
            guids = [g - _TWO_64 if (g := rng.getrandbits(64)) >= _TWO_63 else g
                     for _ in range(snapshots)]
            sizes = [rng.randrange(0, 1 << 30) for _ in range(snapshots)]
            for index, system_id in enumerate(ids):
                pool = HUB_POOL if index == 0 else TARGET_POOL
                dataset = f"{pool}/data/ds{j:03d}"
                count = snapshots - (0 if index == 0 else 1 + (index + j) % MAX_LAG)
                prefix = f"{index:08x}-{j:04x}-7000-8000-"
                conn.executemany(sql, (
                    (f"{prefix}{h:012x}", system_id, pool, dataset, names[h], guids[h],
                     1000 + 7 * h, stamps[h], sizes[h], sizes[h] * 2, created, created)
                    for h in range(count)))
                total += count
            conn.commit()
    finally:
        conn.close()
    return total


# -- measuring ------------------------------------------------------------------------------


def percentiles(times: list[float]) -> tuple[float, float]:
    """(p50, p90) in milliseconds."""
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p90 * 1000


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU time of the server process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Timing:
    p50: float  # ms, wall clock as the client sees it
    p90: float
    cpu: float  # ms of server CPU per call (less sensitive to a busy machine than wall time)
    said: str


def timed(client: httpx.Client, pid: int, url: str, calls: int,
          check: Callable[[dict], str], before_each: Callable[[], None] | None = None) -> Timing:
    """Warm up twice, then time ``calls`` GET requests (each after ``before_each``)."""
    said = ""
    for _ in range(2):
        response = client.get(url)
        response.raise_for_status()
        said = check(response.json())
    times, cpu_spent = [], 0.0
    for _ in range(calls):
        if before_each is not None:
            before_each()
        cpu_before = server_cpu_seconds(pid)
        started = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - started)
        cpu_spent += server_cpu_seconds(pid) - cpu_before
        response.raise_for_status()
    p50, p90 = percentiles(times)
    return Timing(p50, p90, cpu_spent / calls * 1000, said)


def a_report(client: httpx.Client, fleet: Fleet, took: list[float]) -> Callable[[], None]:
    """The hub reports one new snapshot (as an agent or the guide's cron script would); the
    witness re-plans the hub's groups before it answers. ``took`` collects its durations."""
    rng = random.Random(7)

    def report() -> None:
        moment = datetime.now(UTC)
        body = {"system_id": fleet.hub, "pool": HUB_POOL, "dataset": f"{HUB_POOL}/data/ds000",
                "name": f"bench_{moment:%Y%m%d_%H%M%S_%f}", "guid": str(rng.getrandbits(63)),
                "timestamp": moment.isoformat(), "size": 4096, "createtxg": 10**9 + len(took)}
        started = time.perf_counter()
        client.post("/snapshots", json=body).raise_for_status()
        took.append(time.perf_counter() - started)
    return report


def a_write(client: httpx.Client) -> Callable[[], None]:
    """A write that tells cached plans they may be stale without re-planning anything (a new
    host registers, in no group yet), so that the next read plans afresh."""
    count = iter(range(10**9))

    def write() -> None:
        body = {"hostname": f"bench-new-{next(count):06d}", "platform": "linux"}
        client.post("/systems", json=body).raise_for_status()
    return write


def _said_instructions(body: dict) -> str:
    kinds = sorted({a["action_type"] for a in body["actions"]})
    return f"{body['action_count']} actions ({', '.join(kinds)}), {len(json.dumps(body)) >> 10} KiB"


def _said_status(body: dict) -> str:
    return f"{body['total_states']} states {body['status_breakdown']}"



@contextmanager
def served(fleet: Fleet, data_dir: Path,
           monitor_interval: int) -> Iterator[tuple[httpx.Client, int]]:
    """A real ``zfs-sync serve`` on the fleet's database, and a keep-alive client for it."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZFS_SYNC_")}
    env.update(
        ZFS_SYNC_DATA_DIR=str(data_dir),
        ZFS_SYNC_DATABASE_URL=fleet.url,
        ZFS_SYNC_ADMIN_TOKEN=ADMIN_TOKEN,
        ZFS_SYNC_HOST="127.0.0.1",
        ZFS_SYNC_PORT=str(port),
        ZFS_SYNC_LOG_LEVEL="WARNING",
        ZFS_SYNC_MONITOR_INTERVAL_SECONDS=str(monitor_interval),
    )
    url = f"http://127.0.0.1:{port}/api/v1"
    with open(data_dir / "witness.log", "wb") as log:
        process = subprocess.Popen(_server_command(), env=env, stdout=log, stderr=log)
        try:
            _wait_healthy(url, process, data_dir)
            with httpx.Client(base_url=url, headers={"X-API-Key": ADMIN_TOKEN},
                              timeout=600) as client:
                yield client, process.pid
        finally:
            process.terminate()
            process.wait(timeout=60)


def _wait_healthy(url: str, process: subprocess.Popen[bytes], data_dir: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the witness exited; see {data_dir / 'witness.log'}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the witness did not start in 60 s")
        time.sleep(0.1)


def first_check(client: httpx.Client, group: str) -> tuple[float, int]:
    """POST /check until it succeeds: the monitor's first tick (at start) re-plans every group
    inside one write transaction, and a check waiting longer than SQLite's busy timeout (30 s)
    gets a 500. Returns (seconds of the successful check, failed attempts)."""
    failures = 0
    while True:
        started = time.perf_counter()
        response = client.post(f"/sync/groups/{group}/check")
        if response.status_code == 200:
            return time.perf_counter() - started, failures
        failures += 1
        if failures >= 5:
            response.raise_for_status()


def measure(fleet: Fleet, data_dir: Path, args: argparse.Namespace,
            label: str) -> dict[str, Timing]:
    try:
        return _measure(fleet, data_dir, args.calls, args.monitor_interval, label)
    except httpx.HTTPError as exc:
        log = (data_dir / "witness.log").read_text(errors="replace").splitlines()
        print(f"{label}: {exc!r} from {exc.request.url}; witness.log ends:")
        print("\n".join(log[-40:]))
        raise SystemExit(1) from None


def _measure(fleet: Fleet, data_dir: Path, calls: int, monitor_interval: int,
             label: str) -> dict[str, Timing]:
    target = fleet.targets[0]
    with served(fleet, data_dir, monitor_interval) as (client, pid):
        check, failures = first_check(client, fleet.group)
        instructions_url = f"/sync/instructions/{target}"
        status_url = f"/sync/groups/{fleet.group}/status"
        write = a_write(client)
        cold = max(3, calls // 3)
        got = {
            "instructions": timed(client, pid, instructions_url, calls, _said_instructions),
            "status": timed(client, pid, status_url, calls, _said_status),
            "instructions cold": timed(client, pid, instructions_url, cold, _said_instructions,
                                       write),
            "status cold": timed(client, pid, status_url, cold, _said_status, write),
        }
        took: list[float] = []
        report = a_report(client, fleet, took)
        got["instructions after a report"] = timed(client, pid, instructions_url, cold,
                                                   _said_instructions, report)
        got["status after a report"] = timed(client, pid, status_url, cold, _said_status, report)
        report_p50, report_p90 = percentiles(took)
        rss = peak_rss_mib(pid)
    waited = f" (after {failures} x 500 'database is locked')" if failures else ""
    print(f"{label}: first check (plans and stores every state) {check * 1000:.0f} ms{waited}")
    for name, path in (("instructions", "instructions/{target}"),
                       ("status", "groups/{id}/status   "),
                       ("instructions cold", "instructions, cold   "),
                       ("status cold", "status, cold         "),
                       ("instructions after a report", "instructions, report "),
                       ("status after a report", "status, report       ")):
        t = got[name]
        print(f"    {path}  p50 {t.p50:7.1f} ms  p90 {t.p90:7.1f} ms  "
              f"server CPU {t.cpu:7.1f} ms/call  ({t.said})")
    print(f"    POST /snapshots (hub, one new snapshot; re-plans the group)  p50 "
          f"{report_p50:7.1f} ms  p90 {report_p90:7.1f} ms")
    print("    (cold: each call right after a write that re-plans nothing (a new host\n"
          "     registers), so that it plans afresh; report: each call right after the hub\n"
          "     reported a new snapshot, whose request re-planned the group and left the plans\n"
          "     cached)")
    print(f"    peak server RSS {rss:.0f} MiB")
    return got


def profile(fleet: Fleet) -> None:
    """In-process cProfile of what the two routes do (without HTTP and JSON)."""
    from zfs_sync import planning
    from zfs_sync.api.routes.sync import load_status
    from zfs_sync.config import load_settings

    db = Database(fleet.url)
    settings = load_settings(env={}, database_url=fleet.url, admin_token=ADMIN_TOKEN)
    now = datetime.now(UTC)
    jobs = {
        "instructions": lambda s: planning.plans_for_target(s, fleet.targets[0], settings, now),
        "status": lambda s: load_status(s, fleet.group, settings, now),
    }
    for name, job in jobs.items():
        with db.read() as session:
            job(session)  # warm caches
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(5):
                job(session)
            profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(r"zfs_sync|sqlalchemy/engine|sqlite3", 25)
        print(f"--- profile: {name} (5 calls, cumulative) ---")
        print("\n".join(line for line in out.getvalue().splitlines()[6:] if line.strip()))
    db.dispose()


def main_fleet(args: argparse.Namespace, work: Path) -> None:
    size = args.systems * args.datasets * args.snapshots
    print(f"fleet: {args.systems} systems x {args.datasets} datasets x {args.snapshots} "
          f"snapshots (one directional group, hub = system 0, targets 1-{MAX_LAG} behind)")
    started = time.perf_counter()
    fleet = build_fleet(work / "fleet.db", args.systems, args.datasets, args.snapshots, args.seed,
                        args.analyze)
    print(f"  built {fleet.snapshots:,} snapshot rows (~{size:,}) in "
          f"{time.perf_counter() - started:.1f} s "
          f"({(work / 'fleet.db').stat().st_size / 2**20:.0f} MiB)")
    measure(fleet, work, args, "  fleet")
    if args.profile:
        profile(fleet)
    (work / "fleet.db").unlink()


def growth(args: argparse.Namespace, work: Path) -> None:
    sizes = [int(x) for x in args.growth_sizes.split(",") if x]
    if not sizes:
        return
    print(f"\ngrowth: {args.growth_systems} systems x {args.growth_datasets} datasets, "
          f"history of {', '.join(f'{n:,}' for n in sizes)} snapshots per dataset")
    results = []
    for n in sizes:
        path = work / f"growth-{n}.db"
        fleet = build_fleet(path, args.growth_systems, args.growth_datasets, n, args.seed,
                            args.analyze)
        results.append((n, measure(fleet, work, args, f"  {n:,} per dataset")))
        path.unlink()
    first_n, first = results[0]
    for kind in ("", " cold"):
        ins0, sts0 = first["instructions" + kind], first["status" + kind]
        print(f"\n  {'warm (plan cache)' if not kind else 'cold (after a write)'}")
        print("  snapshots/dataset | instructions p50 (CPU) | status p50 (CPU)    | history x | "
              "instructions x | status x")
        for n, got in results:
            ins, sts = got["instructions" + kind], got["status" + kind]
            print(f"  {n:17,} | {ins.p50:8.1f} ms ({ins.cpu:6.1f}) | "
                  f"{sts.p50:8.1f} ms ({sts.cpu:6.1f}) "
                  f"| {n / first_n:9.1f} | {ins.p50 / ins0.p50:14.2f} | {sts.p50 / sts0.p50:8.2f}")
    print("  (x: p50 relative to the shortest history; linear growth would follow 'history x')")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", type=int, default=20)
    parser.add_argument("--datasets", type=int, default=100)
    parser.add_argument("--snapshots", type=int, default=1000, help="per dataset")
    parser.add_argument("--calls", type=int, default=30, help="timed calls per measurement")
    parser.add_argument("--growth-systems", type=int, default=4)
    parser.add_argument("--growth-datasets", type=int, default=100)
    parser.add_argument("--growth-sizes", default=None,
                        help="comma-separated snapshots per dataset (default 100,1000,5000; "
                        "'' skips the growth check)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true",
                        help="4 x 20 x 200, growth 2 x 20 x 50/200/1000, 10 calls")
    parser.add_argument("--profile", action="store_true",
                        help="also profile the two routes' work in-process (cProfile)")
    parser.add_argument("--monitor-interval", type=int, default=3600,
                        help="the witness's ZFS_SYNC_MONITOR_INTERVAL_SECONDS (default 3600: "
                        "only the tick at start; the product default is 30)")
    parser.add_argument("--analyze", action="store_true",
                        help="run ANALYZE after loading (as `zfs-sync db analyze` would)")
    parser.add_argument("--skip-fleet", action="store_true", help="only the growth check")
    args = parser.parse_args()
    if args.quick:
        args.systems, args.datasets, args.snapshots, args.calls = 4, 20, 200, 10
        args.growth_systems, args.growth_datasets = 2, 20
        if args.growth_sizes is None:
            args.growth_sizes = "50,200,1000"
    if args.growth_sizes is None:
        args.growth_sizes = "100,1000,5000"
    work = Path(tempfile.mkdtemp(prefix="zfs-sync-bench-planning-"))
    try:
        if not args.skip_fleet:
            main_fleet(args, work)
        growth(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
