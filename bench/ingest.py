"""Ingest benchmark: full-state snapshot reports against a real witness process.

Starts ``zfs-sync serve`` on 127.0.0.1 with a fresh database (SQLite in a temporary directory
unless ``--database-url`` is given), registers a synthetic fleet (``bench/fleet.py``) and
measures, over HTTP:

- first reports: every host's full state (``PUT /systems/{id}/snapshots``), one after the
  other, as snapshots per second;
- an unchanged re-report of one host (nothing to write);
- an hourly cycle of one host: one new snapshot per dataset and the oldest one pruned;
- the peak resident memory of the server process (VmHWM).

It prints numbers and asserts nothing (targets: >= 50,000 snapshots/s for the first reports,
< 0.5 s for an unchanged 20,000-snapshot re-report).

    .venv/bin/python bench/ingest.py                       # 10 x 100 x 200 = 200,000
    .venv/bin/python bench/ingest.py --systems 2 --snapshots 20
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fleet import Host, make_fleet, next_hour  # noqa: E402

ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_command() -> list[str]:
    script = Path(sys.executable).parent / "zfs-sync"
    if script.exists():
        return [str(script), "serve"]
    return [sys.executable, "-c", "from zfs_sync.cli import main; main()", "serve"]


@contextmanager
def witness(data_dir: Path, database_url: str | None) -> Iterator[tuple[str, int]]:
    """A ``zfs-sync serve`` process on a free loopback port: (base URL, pid)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZFS_SYNC_")}
    env.update(
        ZFS_SYNC_DATA_DIR=str(data_dir),
        ZFS_SYNC_DATABASE_URL=database_url or f"sqlite:///{data_dir}/zfs_sync.db",
        ZFS_SYNC_ADMIN_TOKEN=ADMIN_TOKEN,
        ZFS_SYNC_HOST="127.0.0.1",
        ZFS_SYNC_PORT=str(port),
        ZFS_SYNC_LOG_LEVEL="WARNING",
    )
    log = open(data_dir / "witness.log", "wb")
    process = subprocess.Popen(_server_command(), env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the witness exited; see {data_dir / 'witness.log'}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the witness did not start in 60 s")
            time.sleep(0.1)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _put(client: httpx.Client, system_id: str, body: bytes) -> tuple[float, dict[str, int]]:
    started = time.perf_counter()
    response = client.put(f"/systems/{system_id}/snapshots", content=body)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"report failed: {response.status_code} {response.text[:500]}")
    return elapsed, response.json()


def run(args: argparse.Namespace) -> None:
    print(f"fleet: {args.systems} systems x {args.datasets} datasets x {args.snapshots} "
          f"snapshots (seed {args.seed})")
    fleet = make_fleet(args.systems, args.datasets, args.snapshots, args.seed)
    bodies = [json.dumps(host.report()).encode() for host in fleet]
    total = sum(host.snapshot_count for host in fleet)
    print(f"{total} snapshots, {sum(map(len, bodies)) / 2**20:.1f} MiB of JSON")
    data_dir = Path(tempfile.mkdtemp(prefix="zfs-sync-bench-"))
    try:
        with witness(data_dir, args.database_url) as (url, pid), httpx.Client(
            base_url=url, headers={"X-API-Key": ADMIN_TOKEN, "Content-Type": "application/json"},
            timeout=600,
        ) as client:
            ids = [_register(client, host) for host in fleet]
            _first_reports(client, ids, bodies, total, args.concurrency)
            _re_reports(client, ids[0], bodies[0], fleet[0], args)
            print(f"peak server RSS: {peak_rss_mib(pid):.0f} MiB")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _register(client: httpx.Client, host: Host) -> str:
    response = client.post("/systems", json={"hostname": host.hostname, "platform": "linux"})
    response.raise_for_status()
    return str(response.json()["id"])


def _first_reports(
    client: httpx.Client, ids: list[str], bodies: list[bytes], total: int, concurrency: int
) -> None:
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda job: _put(client, *job), zip(ids, bodies, strict=True)))
    wall = time.perf_counter() - started
    times = [elapsed for elapsed, _ in results]
    how = "one after the other" if concurrency == 1 else f"{concurrency} at a time"
    print(f"first reports ({how}): {total} snapshots in {wall:.2f} s = "
          f"{total / wall:,.0f} snapshots/s (per report: median {statistics.median(times):.3f} s, "
          f"max {max(times):.3f} s)")


def _re_reports(
    client: httpx.Client, system_id: str, body: bytes, host: Host, args: argparse.Namespace
) -> None:
    times = []
    for _ in range(args.repeat):
        elapsed, counts = _put(client, system_id, body)
        times.append(elapsed)
    print(f"unchanged re-report of {host.snapshot_count} snapshots: best {min(times):.3f} s, "
          f"median {statistics.median(times):.3f} s ({counts})")
    rng = random.Random(args.seed + 1)
    fresh = list(next_hour(host, rng))
    elapsed, counts = _put(client, system_id, json.dumps(host.report()).encode())
    print(f"hourly cycle ({len(fresh)} new, {len(fresh)} pruned): {elapsed:.3f} s ({counts})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", type=int, default=10)
    parser.add_argument("--datasets", type=int, default=100)
    parser.add_argument("--snapshots", type=int, default=200, help="per dataset")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5, help="unchanged re-reports to time")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="first reports sent at the same time (default: one after the other)")
    parser.add_argument("--database-url", help="e.g. postgresql://postgres@127.0.0.1/bench "
                        "(default: SQLite in a temporary directory)")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
