"""Soak test: steady simulated agents for a long time; do the witness's resources stay flat?

It runs the load test's fleet (``bench/load.py``, ``bench/agents.py``) at a modest rate, with
the monitor ticking every ``--monitor-interval`` seconds inside ``zfs-sync serve``, and samples
every witness process every ``--sample-every`` seconds: resident memory (``VmRSS`` in
``/proc/PID/status``), open file descriptors (``/proc/PID/fd``) and database connections
(SQLite: descriptors open on the database file or its ``-wal``; PostgreSQL: its backends in
``pg_stat_activity`` for the test database). After ``--warmup`` seconds the verdict compares
the start of the steady period with its end: resident memory (median of the last 3 samples
against the median of the first 3) must stay within 10%; descriptors and connections must not
grow (the highest value of the second half of the steady period at most the highest of the
first half plus 10%, at least 2: a pool that fills up is bounded, a leak keeps rising). The
load test's own checks (no 5xx, no "database is locked", the audit) apply too. It prints the
series and the verdict and exits 1 on a failure.

    .venv/bin/python bench/soak.py                                  # 30 min, SQLite
    .venv/bin/python bench/soak.py --database-url postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/soak.py --duration 180 --warmup 60       # a trial
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load  # noqa: E402

MEMORY_TOLERANCE = 0.10


@dataclass
class Sample:
    seconds: float
    rss_mib: list[float] = field(default_factory=list)  # per witness
    fds: list[int] = field(default_factory=list)
    connections: list[int] = field(default_factory=list)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_fds(pid: int) -> list[str]:
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:  # closed meanwhile
            pass
    return targets


def connections(fleet: load.Fleet, pid: int, fds: list[str], server_url: str | None) -> int:
    """SQLite: this process's descriptors on the database or its WAL. PostgreSQL: the
    backends of the test database whose client port is one of this process's sockets."""
    if fleet.database_name is None:
        db = fleet.database_url.removeprefix("sqlite:///")
        return sum(1 for target in fds if target in (db, db + "-wal"))
    ports = local_ports(pid, fds)
    query = f"SELECT array_agg(client_port) FROM pg_stat_activity WHERE datname = " \
            f"'{fleet.database_name}'"
    return sum(1 for port in load.pg_admin(server_url or "", query) or [] if port in ports)


def local_ports(pid: int, fds: list[str]) -> set[int]:
    """The local TCP ports of the process's open sockets (``/proc/PID/net/tcp*``)."""
    inodes = {target[8:-1] for target in fds if target.startswith("socket:[")}
    ports = set()
    for name in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{name}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def sample(fleet: load.Fleet, started: float, server_url: str | None) -> Sample:
    point = Sample(round(time.monotonic() - started, 1))
    for witness in fleet.witnesses:
        fds = open_fds(witness.pid)
        point.rss_mib.append(round(rss_mib(witness.pid), 1))
        point.fds.append(len(fds))
        point.connections.append(connections(fleet, witness.pid, fds, server_url))
    return point


def sampler(series: list[Sample], every: float, server_url: str | None) -> Any:
    """The coroutine function ``load.drive`` runs beside the agents."""

    async def run(fleet: load.Fleet, deadline: float) -> None:
        started = time.monotonic()
        while True:
            series.append(await asyncio.to_thread(sample, fleet, started, server_url))
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(every, left))

    return run


def _grew(steady: list[Sample], values: Any) -> tuple[int, int, bool]:
    """(high of the first half, high of the second half, grew): a leak keeps setting new
    highs; a pool that filled up during the first half does not."""
    half = len(steady) // 2
    first = max(values(s) for s in steady[:half])
    second = max(values(s) for s in steady[half:])
    return first, second, second > first + max(2, first // 10)


def verdict(series: list[Sample], warmup: float) -> tuple[list[str], dict[str, Any]]:
    """(failures, figures) over the samples taken after the warm-up."""
    steady = [s for s in series if s.seconds >= warmup]
    if len(steady) < 6:
        return [f"only {len(steady)} samples after the warm-up: run longer"], {}
    failed, figures = [], {}
    for w in range(len(steady[0].rss_mib)):
        rss0 = statistics.median(s.rss_mib[w] for s in steady[:3])
        rss1 = statistics.median(s.rss_mib[w] for s in steady[-3:])
        growth = (rss1 - rss0) / rss0
        fds = _grew(steady, lambda s, w=w: s.fds[w])
        conns = _grew(steady, lambda s, w=w: s.connections[w])
        figures[f"witness{w}"] = {
            "rss_mib_start": rss0, "rss_mib_end": rss1, "rss_growth": round(growth, 3),
            "rss_mib_max": max(s.rss_mib[w] for s in steady),
            "fds_first_half_max": fds[0], "fds_second_half_max": fds[1],
            "connections_first_half_max": conns[0], "connections_second_half_max": conns[1],
        }
        if growth > MEMORY_TOLERANCE:
            failed.append(f"witness{w}: RSS grew {growth:.1%} ({rss0:.1f} -> {rss1:.1f} MiB)")
        if fds[2]:
            failed.append(f"witness{w}: open descriptors grew ({fds[0]} -> {fds[1]})")
        if conns[2]:
            failed.append(f"witness{w}: database connections grew ({conns[0]} -> {conns[1]})")
    return failed, figures


def table(series: list[Sample], warmup: float) -> str:
    count = len(series[0].rss_mib) if series else 0
    head = "   t (s)  " + "".join(f"  w{w} RSS MiB  w{w} fds  w{w} db conns"
                                   for w in range(count))
    lines = [head]
    for s in series:
        mark = " " if s.seconds >= warmup else "*"
        lines.append(f"{s.seconds:>8.0f}{mark} " + "".join(
            f"{s.rss_mib[w]:>12.1f}{s.fds[w]:>8}{s.connections[w]:>13}" for w in range(count)))
    lines.append("(* warm-up)")
    return "\n".join(lines)


def main() -> None:
    parser = load.parser(__doc__.split("\n\n")[0])
    parser.set_defaults(duration=1800.0, agents=20, datasets=20, snapshots=100, interval=15.0,
                        groups=2, group_size=4, group_datasets=5, monitor_interval=5)
    parser.add_argument("--warmup", type=float, default=300.0,
                        help="seconds before the steady period the verdict looks at")
    parser.add_argument("--sample-every", type=float, default=10.0)
    args = parser.parse_args()
    options = load.options_from(args)
    series: list[Sample] = []
    figures = load.run_load(options, sampler(series, args.sample_every, args.database_url))
    failed, resources = verdict(series, args.warmup)
    failed = load.failures(figures) + failed
    print(load.summary(figures))
    print()
    print(table(series, args.warmup))
    print()
    for name, row in resources.items():
        print(f"{name}: RSS {row['rss_mib_start']:.1f} -> {row['rss_mib_end']:.1f} MiB "
              f"({row['rss_growth']:+.1%}, max {row['rss_mib_max']:.1f}); highest fds "
              f"{row['fds_first_half_max']} then {row['fds_second_half_max']}; highest db "
              f"connections {row['connections_first_half_max']} then "
              f"{row['connections_second_half_max']} (first then second half of the steady "
              "period)")
    if args.json:
        figures.update(failures=failed, resources=resources,
                       series=[vars(s) for s in series], warmup=args.warmup)
        Path(args.json).write_text(json.dumps(figures, indent=2))
    print("\nFAIL: " + "; ".join(failed) if failed else "\nPASS: resources flat, every check held")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
