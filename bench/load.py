"""Load test: simulated agents against real witness processes on 127.0.0.1, bounded in time.

It starts the witness itself (``zfs-sync serve`` on free loopback ports, data in a temporary
directory): one process on a fresh SQLite database, or, with ``--database-url``, two processes
sharing a fresh PostgreSQL database that it creates on that server and drops at the end. It
registers ``--agents`` simulated agents (``bench/agents.py``), sends each one's first full
report, creates ``--groups`` directional sync groups (a hub and ``--group-size - 1`` targets
that pull ``--group-datasets`` of its datasets), then for ``--duration`` seconds every agent
runs the real agent's cycle (full report with a new snapshot per dataset and the oldest
expired, heartbeat, instructions, state reports around each simulated transfer, a scoped
re-report, heartbeat) every ``--interval`` seconds, jittered, or back to back with
``--closed-loop``. Agents are split between the witness processes.

Afterwards it audits through the API: for every agent, the snapshots of each dataset at its
last acknowledged report must be exactly those the witness serves (paginated
``GET /snapshots``: names, guids, creation times), and the last acknowledged state report of
every edge must show in ``GET /sync/states/{id}``. It prints requests/s, per-endpoint counts
and p50/p99 latencies, and exits 1 when a check fails: a 5xx or transport error, a 4xx on a
report/heartbeat/instructions, "database is locked" in a response or a witness log, an error
logged by a witness, or an audit mismatch.

    .venv/bin/python bench/load.py                                   # 100 agents, 300 s, SQLite
    .venv/bin/python bench/load.py --database-url postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/load.py --agents 10 --datasets 5 --snapshots 50 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agents import SimAgent, SimHost, Stats, audit  # noqa: E402

ADMIN_TOKEN = "load-admin-token-0123456789abcdef"
# Endpoints on which any 4xx is a failure; a state report may meet a 404 when the source
# expired the action's snapshot meanwhile, as a real agent may.
STRICT_4XX = ("PUT /systems/{id}/snapshots", "POST /systems/{id}/heartbeat",
              "GET /sync/instructions/{id}", "GET /systems/{id}/protected-snapshots")


@dataclass
class Options:
    agents: int = 100
    datasets: int = 50
    snapshots: int = 200
    duration: float = 300.0
    interval: float = 10.0
    closed_loop: bool = False
    groups: int = 4
    group_size: int = 4
    group_datasets: int = 5
    sync_interval: int = 60
    database_url: str | None = None  # a PostgreSQL server URL: a fresh database is made on it
    witnesses: int = 0  # 0: one on SQLite, two on PostgreSQL
    monitor_interval: int = 10
    seed: int = 1
    keep_dir: bool = False


@dataclass
class Witness:
    url: str
    pid: int
    log: Path


@dataclass
class Fleet:
    """What a run sets up: the witnesses, the database, the agents."""

    witnesses: list[Witness]
    data_dir: Path
    database_url: str
    database_name: str | None = None  # PostgreSQL: the fresh database
    agents: list[SimAgent] = field(default_factory=list)


# --- processes and databases --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_command() -> list[str]:
    script = Path(sys.executable).parent / "zfs-sync"
    if script.exists():
        return [str(script), "serve"]
    return [sys.executable, "-c", "from zfs_sync.cli import main; main()", "serve"]


def spawn_witness(stack: ExitStack, data_dir: Path, database_url: str, log_name: str,
                  env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Witness]:
    """Start ``zfs-sync serve`` on a free loopback port, logging to ``data_dir/log_name``;
    ``stack`` stops it. Not yet answering: see ``_wait_healthy``."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ZFS_SYNC_")}
    environ.update(ZFS_SYNC_DATA_DIR=str(data_dir), ZFS_SYNC_DATABASE_URL=database_url,
                   ZFS_SYNC_ADMIN_TOKEN=ADMIN_TOKEN, ZFS_SYNC_HOST="127.0.0.1",
                   ZFS_SYNC_PORT=str(port), ZFS_SYNC_LOG_LEVEL="WARNING", **env)
    log_path = data_dir / log_name
    log = stack.enter_context(open(log_path, "wb"))  # noqa: SIM115 - the stack closes it
    process = subprocess.Popen(_server_command(), env=environ, stdout=log, stderr=log)
    stack.callback(_stop, process)
    return process, Witness(f"http://127.0.0.1:{port}/api/v1", process.pid, log_path)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the witness exited with {process.returncode}; see {log}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the witness did not become healthy in 90 s; see {log}")


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def pg_admin(url: str, statement: str) -> Any:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement)
        row = cursor.fetchone() if cursor.description else None
    return row[0] if row else None


@contextmanager
def fresh_postgres(server_url: str) -> Iterator[tuple[str, str]]:
    """A new database on the server of ``server_url``, dropped afterwards: (url, name)."""
    name = f"zfs_sync_load_{os.getpid()}_{random.randrange(10**6)}"
    pg_admin(server_url, f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(server_url, name), name
    finally:
        pg_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fleet_witnesses(options: Options, **env: str) -> Iterator[Fleet]:
    """The witness processes on a fresh database, for the length of the block."""
    with ExitStack() as stack:
        data_dir = Path(tempfile.mkdtemp(prefix="zfs-sync-load-"))
        if not options.keep_dir:
            stack.callback(shutil.rmtree, data_dir, True)
        name = None
        if options.database_url:
            url, name = stack.enter_context(fresh_postgres(options.database_url))
        else:
            url = f"sqlite:///{data_dir}/zfs_sync.db"
        count = options.witnesses or (2 if name else 1)
        env = {"ZFS_SYNC_MONITOR_INTERVAL_SECONDS": str(options.monitor_interval), **env}
        started = [spawn_witness(stack, data_dir, url, f"witness{i}.log", env)
                   for i in range(count)]  # started together: startup is mostly imports
        for process, witness in started:
            _wait_healthy(witness.url, process, witness.log)
        yield Fleet([witness for _, witness in started], data_dir, url, name)


# --- setup --------------------------------------------------------------------------------


def _client(base_url: str, connections: int) -> httpx.AsyncClient:
    # uvicorn closes a connection idle for 5 s: reusing one it is closing races that close.
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections,
                          keepalive_expiry=2.0)
    return httpx.AsyncClient(base_url=base_url, timeout=300, limits=limits)


async def register(admin: httpx.AsyncClient, host: SimHost) -> tuple[str, str]:
    body = {"hostname": host.hostname, "platform": "linux",
            "ssh_hostname": f"{host.hostname}.load.invalid", "ssh_user": "zfs"}
    response = await admin.post("/systems", json=body)
    response.raise_for_status()
    data = response.json()
    return str(data["id"]), str(data["api_key"])


async def create_groups(admin: httpx.AsyncClient, agents: list[SimAgent],
                        options: Options) -> list[str]:
    """Directional groups: a hub and targets that keep its datasets under backup/<hub>."""
    ids = []
    size = max(2, options.group_size)
    for g in range(min(options.groups, len(agents) // size)):
        hub, *targets = agents[g * size:(g + 1) * size]
        members = [{"system_id": hub.system_id, "root": hub.host.pool}]
        members += [{"system_id": t.system_id, "root": f"backup/{hub.host.hostname}"}
                    for t in targets]
        body = {"name": f"load-group-{g}", "directional": True, "hub_system_id": hub.system_id,
                "members": members, "sync_interval_seconds": options.sync_interval,
                "datasets": [f"data/ds{j:03d}"
                             for j in range(min(options.group_datasets, options.datasets))]}
        response = await admin.post("/sync-groups", json=body)
        response.raise_for_status()
        ids.append(str(response.json()["id"]))
    return ids


async def setup(fleet: Fleet, options: Options, stats: Stats,
                clients: list[httpx.AsyncClient]) -> dict[str, Any]:
    """Register the agents, send their first full reports and create the groups."""
    interval = 0.0 if options.closed_loop else options.interval
    now = time.time()
    hosts = [SimHost.create(i, options.datasets, options.snapshots, options.seed, now)
             for i in range(options.agents)]
    by_id: dict[str, SimHost] = {}
    async with _client(fleet.witnesses[0].url, 4) as admin:
        admin.headers["X-API-Key"] = ADMIN_TOKEN
        for index, host in enumerate(hosts):
            system_id, key = await register(admin, host)
            by_id[system_id] = host
            client = clients[index % len(clients)]
            fleet.agents.append(SimAgent(host, system_id, key, client, stats, by_id, interval))
        started = time.perf_counter()
        gate = asyncio.Semaphore(2)

        async def first_report(agent: SimAgent) -> None:
            async with gate:
                await agent.report()

        await asyncio.gather(*(first_report(agent) for agent in fleet.agents))
        first = time.perf_counter() - started
        groups = await create_groups(admin, fleet.agents, options)
    return {"first_reports_seconds": round(first, 2), "groups": len(groups),
            "snapshots_at_start": sum(a.snapshots_reported for a in fleet.agents)}


# --- the run ------------------------------------------------------------------------------


async def drive(fleet: Fleet, options: Options, during: Any = None) -> dict[str, Any]:
    """Set up, run the agents for ``options.duration`` s, audit; the figures.

    ``during``: an optional coroutine function called with the fleet while the agents run
    (the soak test samples the witnesses with it); it must return by the deadline."""
    connections = options.agents + 8
    clients = [_client(w.url, connections) for w in fleet.witnesses]
    try:
        prime = Stats()
        figures = await setup(fleet, options, prime, clients)
        if any(s.startswith(("4", "5", "t")) for c in prime.statuses.values() for s in c):
            raise RuntimeError(f"the first reports failed: {prime.samples[:3]}")
        stats = Stats()
        for agent in fleet.agents:
            agent.stats = stats
            agent.snapshots_reported = 0
        started = time.monotonic()
        deadline = started + options.duration
        jobs = [agent.run(deadline) for agent in fleet.agents]
        if during is not None:
            jobs.append(during(fleet, deadline))
        await asyncio.gather(*jobs)
        elapsed = time.monotonic() - started
        audited = await audit(clients[0], fleet.agents)
        audit_seconds = time.monotonic() - started - elapsed
    finally:
        for client in clients:
            await client.aclose()
    return {**figures, **_figures(fleet, options, stats, elapsed), "audit": {
        "ok": audited.ok, "seconds": round(audit_seconds, 1),
        "agents": audited.agents, "datasets": audited.datasets,
        "snapshots": audited.snapshots, "edges": audited.edges,
        "problems": audited.problems[:20], "problem_count": len(audited.problems)}}


def _figures(fleet: Fleet, options: Options, stats: Stats, elapsed: float) -> dict[str, Any]:
    requests = stats.count()
    agents = fleet.agents
    return {
        "backend": "postgresql" if fleet.database_name else "sqlite",
        "witnesses": len(fleet.witnesses),
        "options": {k: v for k, v in vars(options).items() if k != "database_url"},
        "elapsed_seconds": round(elapsed, 1),
        "requests": requests,
        "requests_per_second": round(requests / elapsed, 1),
        "cycles": sum(a.cycles for a in agents),
        "snapshots_reported_per_second": round(sum(a.snapshots_reported for a in agents)
                                               / elapsed),
        "transfers": sum(a.transfers for a in agents),
        "transfer_errors": sum(a.transfer_errors for a in agents),
        "other_actions": sum(a.other_actions for a in agents),
        "endpoints": stats.table(),
        "status_5xx": stats.count("5"),
        "transport_errors": stats.count("transport"),
        "transport_retries": stats.retried,
        "strict_4xx": sum(n for row in stats.table() if row["endpoint"].startswith(STRICT_4XX)
                          for s, n in row["statuses"].items() if s.startswith("4")),
        "locked_responses": stats.locked_responses,
        "failure_samples": stats.samples,
        **scan_logs(fleet),
        "peak_rss_mib": [peak_rss_mib(w.pid) for w in fleet.witnesses],
    }


# An error from any logger but zfs_sync.events, which mirrors the event log (a sync.error
# event, i.e. an agent's error report, is logged at ERROR and is no fault of the witness).
LOG_ERROR = re.compile(r"\b(ERROR|CRITICAL) (?!zfs_sync\.events:)|Traceback")


def scan_logs(fleet: Fleet) -> dict[str, Any]:
    locked, errors = 0, 0
    samples: list[str] = []
    for witness in fleet.witnesses:
        for line in witness.log.read_text(errors="replace").splitlines():
            locked += "database is locked" in line
            if LOG_ERROR.search(line):
                errors += 1
                if len(samples) < 10:
                    samples.append(f"{witness.log.name}: {line[:300]}")
    return {"locked_log_lines": locked, "log_errors": errors, "log_error_samples": samples}


def peak_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def run_load(options: Options, during: Any = None, **env: str) -> dict[str, Any]:
    """Start the witnesses, drive the agents, audit: the figures (see ``failures``)."""
    started = time.monotonic()
    with fleet_witnesses(options, **env) as fleet:
        figures: dict[str, Any] = {"start_seconds": round(time.monotonic() - started, 1)}
        figures.update(asyncio.run(drive(fleet, options, during)))
        figures.update(scan_logs(fleet))  # again: lines written while the audit ran
        figures["data_dir"] = str(fleet.data_dir) if options.keep_dir else None
    return figures


def failures(figures: dict[str, Any]) -> list[str]:
    """The checks that failed, one readable line each (empty: all passed)."""
    checks = [
        (figures["status_5xx"] == 0, f"{figures['status_5xx']} responses were 5xx"),
        (figures["transport_errors"] == 0,
         f"{figures['transport_errors']} requests failed without a response"),
        (figures["strict_4xx"] == 0,
         f"{figures['strict_4xx']} 4xx on reports, heartbeats or instructions"),
        (figures["locked_responses"] == 0,
         f"{figures['locked_responses']} responses said 'database is locked'"),
        (figures["locked_log_lines"] == 0,
         f"{figures['locked_log_lines']} witness log lines say 'database is locked'"),
        (figures["log_errors"] == 0, f"{figures['log_errors']} error lines in witness logs"),
        (figures["audit"]["ok"],
         f"audit: {figures['audit']['problem_count']} mismatches between acknowledged "
         "reports and the witness's data"),
    ]
    return [message for ok, message in checks if not ok]


# --- output -------------------------------------------------------------------------------


def summary(figures: dict[str, Any]) -> str:
    o = figures["options"]
    lines = [
        f"load: {figures['backend']}, {figures['witnesses']} witness process(es), "
        f"{o['agents']} agents x {o['datasets']} datasets x {o['snapshots']} snapshots, "
        + ("closed loop" if o["closed_loop"] else f"a cycle every ~{o['interval']:g} s")
        + f", {figures['groups']} groups",
        f"witnesses started in {figures['start_seconds']} s; first full reports (before the "
        f"clock): {figures['snapshots_at_start']} snapshots in "
        f"{figures['first_reports_seconds']} s",
        f"ran {figures['elapsed_seconds']} s: {figures['requests']} requests = "
        f"{figures['requests_per_second']} requests/s, {figures['cycles']} agent cycles, "
        f"{figures['snapshots_reported_per_second']:,} snapshots reported/s, "
        f"{figures['transfers']} simulated transfers ({figures['transfer_errors']} failed: "
        "source expired the snapshot)",
        "",
        f"{'endpoint':<40} {'count':>7} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}  statuses",
    ]
    for row in figures["endpoints"]:
        statuses = " ".join(f"{k}:{v}" for k, v in row["statuses"].items())
        lines.append(f"{row['endpoint']:<40} {row['count']:>7} {row['p50_ms']:>9} "
                     f"{row['p99_ms']:>9} {row['max_ms']:>9}  {statuses}")
    a = figures["audit"]
    lines += [
        "",
        f"5xx responses: {figures['status_5xx']}   transport errors: "
        f"{figures['transport_errors']} ({figures['transport_retries']} retried with an "
        f"answer)   4xx on reports/heartbeats/instructions: {figures['strict_4xx']}",
        f"'database is locked': {figures['locked_responses']} responses, "
        f"{figures['locked_log_lines']} log lines   witness log errors: {figures['log_errors']}",
        f"audit: {a['agents']} agents, {a['datasets']} datasets, {a['snapshots']} snapshots, "
        f"{a['edges']} edges checked in {a['seconds']} s: "
        f"{'ok' if a['ok'] else str(a['problem_count']) + ' problems'}",
        f"peak witness RSS (MiB): {figures['peak_rss_mib']}",
    ]
    lines += [f"  {p}" for p in a["problems"][:10]]
    lines += [f"  {s}" for s in figures["failure_samples"][:10] + figures["log_error_samples"]]
    return "\n".join(lines)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    d = Options()
    p.add_argument("--agents", type=int, default=d.agents)
    p.add_argument("--datasets", type=int, default=d.datasets, help="per agent")
    p.add_argument("--snapshots", type=int, default=d.snapshots, help="per dataset")
    p.add_argument("--duration", type=float, default=d.duration, help="seconds of load")
    p.add_argument("--interval", type=float, default=d.interval,
                   help="seconds between an agent's cycles (jittered +-50%%)")
    p.add_argument("--closed-loop", action="store_true",
                   help="no pause: each agent starts its next cycle when one ends")
    p.add_argument("--groups", type=int, default=d.groups, help="directional sync groups")
    p.add_argument("--group-size", type=int, default=d.group_size, help="hub + targets")
    p.add_argument("--group-datasets", type=int, default=d.group_datasets,
                   help="hub datasets each group replicates")
    p.add_argument("--sync-interval", type=int, default=d.sync_interval,
                   help="the groups' sync_interval_seconds (at least 60)")
    p.add_argument("--database-url", help="a PostgreSQL server, e.g. "
                   "postgresql://postgres@127.0.0.1:5432/test: a fresh database is created "
                   "on it and dropped (default: SQLite in a temporary directory)")
    p.add_argument("--witnesses", type=int, default=d.witnesses,
                   help="witness processes (default: 1 on SQLite, 2 on PostgreSQL)")
    p.add_argument("--monitor-interval", type=int, default=d.monitor_interval,
                   help="ZFS_SYNC_MONITOR_INTERVAL_SECONDS of the witnesses")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--keep-dir", action="store_true", help="keep the data dir and logs")
    p.add_argument("--json", metavar="PATH", help="also write the figures to PATH")
    return p


def options_from(args: argparse.Namespace) -> Options:
    names = set(vars(Options()))
    return Options(**{k: v for k, v in vars(args).items() if k in names})


def main() -> None:
    args = parser(__doc__.split("\n\n")[0]).parse_args()
    figures = run_load(options_from(args))
    failed = failures(figures)
    figures["failures"] = failed
    print(summary(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    print("\nFAIL: " + "; ".join(failed) if failed else "\nPASS: every check held")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
