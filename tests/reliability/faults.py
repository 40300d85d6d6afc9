"""Fault injection for the reliability tests and benches (DESIGN.md §3, §11).

- ``WitnessProcess``: a real ``zfs-sync serve`` that can be killed with SIGKILL and started
  again on the same database and port.
- ``PrivatePostgres``: a throwaway PostgreSQL cluster (``initdb`` + ``pg_ctl`` on a free port,
  run as the ``postgres`` user when we are root), never the shared one on 5432.
- A workload of concurrent clients that each own one resource and send monotonically
  versioned writes (round 1, 2, ...), and an audit that can therefore tell, from the stored
  state alone, which round is there and whether it is whole.
"""

from __future__ import annotations

import glob
import hashlib
import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.live import ZFS_SYNC, free_port

ADMIN_TOKEN = "reliability-admin-token-0123456789abcdef"
ADMIN = {"X-API-Key": ADMIN_TOKEN}


class WitnessProcess:
    """``zfs-sync serve`` on a fixed loopback port; ``kill9`` and ``start`` as often as wanted."""

    def __init__(self, data_dir: Path, database_url: str, *, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = f"{self.url}/api/v1"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def env(self) -> dict[str, str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ZFS_SYNC_")}
        environ.update(
            ZFS_SYNC_DATA_DIR=str(self.data_dir),
            ZFS_SYNC_DATABASE_URL=self.database_url,
            ZFS_SYNC_ADMIN_TOKEN=ADMIN_TOKEN,
            ZFS_SYNC_HOST="127.0.0.1",
            ZFS_SYNC_PORT=str(self.port),
            ZFS_SYNC_LOG_LEVEL="WARNING",
        )
        return environ

    @property
    def log_path(self) -> Path:
        return self.data_dir / "witness.log"

    def start(self, timeout: float = 180.0) -> float:
        """Start and wait until healthy; return the seconds it took."""
        assert self.process is None or self.process.poll() is not None, "already running"
        began = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts + 1} ---\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [ZFS_SYNC, "serve"], env=self.env(), stdout=log, stderr=subprocess.STDOUT
            )
        self.starts += 1
        self._wait_healthy(began + timeout)
        return time.monotonic() - began

    def _wait_healthy(self, deadline: float) -> None:
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"zfs-sync serve exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(f"{self.api}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"zfs-sync serve did not become healthy in time:\n{self.log_tail()}")

    def kill9(self) -> None:
        """SIGKILL: no shutdown handler, no flush, no rollback runs."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def db_check(self) -> subprocess.CompletedProcess[str]:
        """``zfs-sync db check`` on the same database and data dir."""
        return subprocess.run(
            [ZFS_SYNC, "db", "check"], env=self.env(), capture_output=True, text=True, timeout=120
        )


def postgres_bin_dir() -> Path | None:
    """The newest PostgreSQL server binaries (``initdb``, ``pg_ctl``), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    return None


class PrivatePostgres:
    """A PostgreSQL cluster of our own on a free port, in a temporary directory.

    initdb refuses to run as root, so as root every command runs as ``postgres`` (runuser);
    the directory is created by us and handed over to that user.
    """

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="zfs-sync-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.as_root = os.geteuid() == 0
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/zfs_sync"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin_dir / args[0]), *args[1:]]
        if self.as_root:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def init(self) -> None:
        os.chmod(self.root, 0o755)
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8")
        self.start()
        import psycopg

        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE zfs_sync")

    def _options(self) -> str:
        # Unix socket in our own directory (not /var/run/postgresql, the shared cluster's);
        # fsync stays on: the restart must not lose acknowledged commits.
        return f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root}"

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", self._options(),
                  "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", self._options(),
                  "-m", mode, "-w", "-t", "60", "restart")

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass  # not running
        shutil.rmtree(self.root, ignore_errors=True)


# -- the workload ---------------------------------------------------------------------------

ACKED = "acked"  # 2xx: the witness said it is stored
REJECTED = "rejected"  # 4xx: the witness said it is not stored
UNAVAILABLE = "unavailable"  # 503: may or may not be stored, never partly
FAILED = "failed"  # no response (killed, reset): may or may not be stored, never partly
ERROR = "error"  # any other 5xx: a bug
BASE_EPOCH = 1_700_000_000


@dataclass
class Record:
    client: str
    kind: str
    round: int
    outcome: str
    status: int | None
    started: float
    seconds: float
    code: str | None = None
    retry_after: str | None = None
    detail: str = ""


class Recorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: list[Record] = []

    def add(self, record: Record) -> None:
        with self._lock:
            self.records.append(record)

    def snapshot(self) -> list[Record]:
        with self._lock:
            return list(self.records)


class Gate:
    """Clients pass it before each request; ``close`` waits until no request is in flight."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open = True
        self._inside = 0

    def enter(self) -> None:
        with self._cond:
            while not self._open:
                self._cond.wait()
            self._inside += 1

    def leave(self) -> None:
        with self._cond:
            self._inside -= 1
            self._cond.notify_all()

    def close(self) -> None:
        """Admit no new request (those in flight go on)."""
        with self._cond:
            self._open = False

    def drain(self) -> None:
        """Wait until no request is in flight."""
        with self._cond:
            while self._inside:
                self._cond.wait()

    def open(self) -> None:
        with self._cond:
            self._open = True
            self._cond.notify_all()


def _guid(*parts: object) -> str:
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return str(int.from_bytes(digest, "big"))


def classify(response: httpx.Response) -> str:
    if response.is_success:
        return ACKED
    if response.status_code == 503:
        return UNAVAILABLE
    if 400 <= response.status_code < 500:
        return REJECTED
    return ERROR


class Writer:
    """One client owning one resource; round r's request and what round r looks like stored."""

    kind = "writer"

    def __init__(self, name: str, headers: dict[str, str]) -> None:
        self.name = name
        self.headers = headers
        self.last_round = 0  # rounds 1..last_round were sent

    def request(self, round_: int) -> tuple[str, str, Any]:
        raise NotImplementedError

    def audit(self, http: httpx.Client, api: str, records: list[Record]) -> list[str]:
        raise NotImplementedError


def _rounds(records: list[Record], name: str, outcome: str) -> set[int]:
    return {r.round for r in records if r.client == name and r.outcome == outcome}


def _check_round(name: str, found: int, records: list[Record]) -> list[str]:
    """The stored round must be the last acknowledged one or a later one not refused."""
    acked = _rounds(records, name, ACKED)
    problems = []
    if found and found not in acked:
        problems.append(f"NOTE {name}: round {found} is stored whole without an acknowledgement")
    if acked and found < max(acked):
        problems.append(f"{name}: LOST round {max(acked)} (acknowledged), found round {found}")
    if found in _rounds(records, name, REJECTED):
        problems.append(f"{name}: round {found} was refused (4xx) but is stored")
    return problems


def fetch_snapshots(http: httpx.Client, api: str, system_id: str) -> set[tuple[str, str, str]]:
    """Every stored (dataset, name, guid) of a system, through the API."""
    found: set[tuple[str, str, str]] = set()
    offset = 0
    while True:
        response = http.get(f"{api}/snapshots", params={
            "system_id": system_id, "limit": 1000, "offset": offset})
        response.raise_for_status()
        items = response.json()
        found.update((i["dataset"], i["name"], i["guid"]) for i in items)
        offset += len(items)
        if not items or offset >= int(response.headers["X-Total-Count"]):
            return found


class FullStateWriter(Writer):
    """``PUT /systems/{id}/snapshots``: the whole state, a new snapshot name set per round."""

    kind = "full-state"

    def __init__(self, name: str, headers: dict[str, str], system_id: str, datasets: int,
                 snapshots: int) -> None:
        super().__init__(name, headers)
        self.system_id = system_id
        self.datasets = [f"tank/data/ds{d:02d}" for d in range(datasets)]
        self.per_dataset = snapshots

    def expected(self, round_: int) -> set[tuple[str, str, str]]:
        return {(ds, f"r{round_:05d}-{k:04d}", _guid(self.name, round_, ds, k))
                for ds in self.datasets for k in range(self.per_dataset)}

    def request(self, round_: int) -> tuple[str, str, Any]:
        snapshots = [
            {"dataset": ds, "name": f"r{round_:05d}-{k:04d}",
             "guid": _guid(self.name, round_, ds, k),
             # distinct times: the API pages newest first, and ties would page unstably
             "timestamp": BASE_EPOCH + round_ * 100_000 + d * 1000 + k,
             "createtxg": round_ * 100_000 + k, "used": 4096 * k, "referenced": 8192}
            for d, ds in enumerate(self.datasets) for k in range(self.per_dataset)
        ]
        body = {"snapshots": snapshots, "datasets": [{"name": ds} for ds in self.datasets]}
        return "PUT", f"/systems/{self.system_id}/snapshots", body

    def audit(self, http: httpx.Client, api: str, records: list[Record]) -> list[str]:
        stored = fetch_snapshots(http, api, self.system_id)
        rounds = {int(name[1:6]) for _, name, _ in stored}
        if not rounds:
            acked = _rounds(records, self.name, ACKED)
            return [f"{self.name}: LOST round {max(acked)}: no snapshots"] if acked else []
        if len(rounds) > 1:
            return [f"{self.name}: PARTIAL: a mix of rounds {sorted(rounds)}"]
        found = rounds.pop()
        problems = _check_round(self.name, found, records)
        if stored != self.expected(found):
            problems.append(f"{self.name}: PARTIAL round {found}: {len(stored)} of "
                            f"{len(self.expected(found))} snapshots, or other guids")
        return problems


class BatchWriter(Writer):
    """``POST /snapshots/batch``: new snapshots each round; they accumulate."""

    kind = "batch"

    def __init__(self, name: str, headers: dict[str, str], system_id: str, datasets: int,
                 snapshots: int) -> None:
        super().__init__(name, headers)
        self.system_id = system_id
        self.datasets = [f"tank/batch/ds{d:02d}" for d in range(datasets)]
        self.per_dataset = snapshots

    def expected(self, round_: int) -> set[tuple[str, str, str]]:
        return {(ds, f"b{round_:05d}-{k:04d}", _guid(self.name, round_, ds, k))
                for ds in self.datasets for k in range(self.per_dataset)}

    def request(self, round_: int) -> tuple[str, str, Any]:
        snapshots = [
            {"system_id": self.system_id, "dataset": ds, "name": f"b{round_:05d}-{k:04d}",
             "guid": _guid(self.name, round_, ds, k),
             "timestamp": BASE_EPOCH + round_ * 100_000 + d * 1000 + k, "used": 512}
            for d, ds in enumerate(self.datasets) for k in range(self.per_dataset)
        ]
        return "POST", "/snapshots/batch", {"snapshots": snapshots}

    def audit(self, http: httpx.Client, api: str, records: list[Record]) -> list[str]:
        stored = fetch_snapshots(http, api, self.system_id)
        by_round: dict[int, set[tuple[str, str, str]]] = {}
        for item in stored:
            by_round.setdefault(int(item[1][1:6]), set()).add(item)
        problems = []
        acked = _rounds(records, self.name, ACKED)
        refused = _rounds(records, self.name, REJECTED)
        for round_ in sorted(acked - by_round.keys()):
            problems.append(f"{self.name}: LOST round {round_} (acknowledged)")
        for round_, items in sorted(by_round.items()):
            if items != self.expected(round_):
                problems.append(f"{self.name}: PARTIAL round {round_}: {len(items)} of "
                                f"{len(self.expected(round_))} snapshots, or other guids")
            if round_ in refused or round_ > self.last_round:
                problems.append(f"{self.name}: round {round_} is stored but was never accepted")
            elif round_ not in acked and items == self.expected(round_):
                problems.append(f"NOTE {self.name}: round {round_} is stored whole without an "
                                "acknowledgement")
        return problems


class GroupWriter(Writer):
    """``PUT /sync-groups/{id}``: description and membership change together each round."""

    kind = "group"

    def __init__(self, name: str, headers: dict[str, str], group_id: str,
                 candidates: list[str]) -> None:
        super().__init__(name, headers)
        self.group_id = group_id
        self.candidates = candidates

    def members(self, round_: int) -> list[str]:
        count = 2 + round_ % (len(self.candidates) - 1)
        start = round_ % len(self.candidates)
        return [self.candidates[(start + i) % len(self.candidates)] for i in range(count)]

    def request(self, round_: int) -> tuple[str, str, Any]:
        body = {"description": f"round {round_}", "system_ids": self.members(round_),
                "sync_interval_seconds": 60 + round_}
        return "PUT", f"/sync-groups/{self.group_id}", body

    def audit(self, http: httpx.Client, api: str, records: list[Record]) -> list[str]:
        response = http.get(f"{api}/sync-groups/{self.group_id}")
        response.raise_for_status()
        group = response.json()
        found = int(group["description"].split()[-1])
        problems = _check_round(self.name, found, records)
        whole = (sorted(group["system_ids"]) == sorted(self.members(found))
                 and group["sync_interval_seconds"] == 60 + found)
        if not whole:
            problems.append(f"{self.name}: PARTIAL round {found}: members "
                            f"{group['system_ids']}, interval {group['sync_interval_seconds']}")
        return problems


class Reader:
    """Reads that touch the database (lists, filters, statistics)."""

    kind = "read"

    def __init__(self, name: str, system_ids: list[str]) -> None:
        self.name = name
        self.headers: dict[str, str] = {}
        self.paths = [f"/snapshots?system_id={system_ids[0]}&limit=100", "/systems",
                      "/sync-groups", f"/snapshots/statistics/{system_ids[-1]}"]
        self.last_round = 0


@dataclass
class Fleet:
    writers: list[Writer]
    readers: list[Reader]


def make_fleet(api: str, *, full: int = 3, batch: int = 2, groups: int = 1, readers: int = 0,
               datasets: int = 20, snapshots: int = 200, batch_datasets: int = 4,
               batch_snapshots: int = 25) -> Fleet:
    """Register one system per snapshot writer and create one sync group per group writer."""
    with httpx.Client(base_url=api, headers=ADMIN, timeout=60) as http:

        def register(hostname: str) -> tuple[str, dict[str, str]]:
            response = http.post("/systems", json={"hostname": hostname, "platform": "linux"})
            response.raise_for_status()
            data = response.json()
            return data["id"], {"X-API-Key": data["api_key"]}

        writers: list[Writer] = []
        for i in range(full):
            system_id, key = register(f"full-{i}")
            writers.append(FullStateWriter(f"full-{i}", key, system_id, datasets, snapshots))
        for i in range(batch):
            system_id, key = register(f"batch-{i}")
            writers.append(BatchWriter(f"batch-{i}", key, system_id, batch_datasets,
                                       batch_snapshots))
        system_ids = [w.system_id for w in writers if isinstance(w, FullStateWriter | BatchWriter)]
        for i in range(groups):
            candidates = system_ids[:3] if len(system_ids) >= 3 else system_ids
            group = GroupWriter(f"group-{i}", ADMIN, "", candidates)
            response = http.post("/sync-groups", json={
                "name": f"group-{i}", "description": "round 0", "system_ids": group.members(0),
                "sync_interval_seconds": 60})
            response.raise_for_status()
            group.group_id = response.json()["id"]
            writers.append(group)
    return Fleet(writers, [Reader(f"read-{i}", system_ids) for i in range(readers)])


class Load:
    """One thread per client; each sends its next request as soon as the previous one ends."""

    def __init__(self, api: str, fleet: Fleet, *, timeout: float) -> None:
        self.api = api
        self.fleet = fleet
        self.timeout = timeout
        self.gate = Gate()
        self.stopping = threading.Event()
        self.recorder = Recorder()
        self.threads = [threading.Thread(target=self._drive, args=(c,), daemon=True)
                        for c in [*fleet.writers, *fleet.readers]]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> list[Record]:
        self.stopping.set()
        self.gate.open()
        for thread in self.threads:
            thread.join(timeout=self.timeout + 30)
        return self.recorder.snapshot()

    def _drive(self, client: Writer | Reader) -> None:
        with httpx.Client(base_url=self.api, headers=client.headers, timeout=self.timeout) as http:
            while not self.stopping.is_set():
                self.gate.enter()
                try:
                    if self.stopping.is_set():
                        break
                    self._one(http, client)
                finally:
                    self.gate.leave()

    def _one(self, http: httpx.Client, client: Writer | Reader) -> None:
        client.last_round += 1
        round_ = client.last_round
        if isinstance(client, Writer):
            method, path, body = client.request(round_)
        else:
            method, path, body = "GET", client.paths[round_ % len(client.paths)], None
        started = time.monotonic()
        try:
            response = http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            self.recorder.add(Record(client.name, client.kind, round_, FAILED, None, started,
                                     time.monotonic() - started, detail=type(exc).__name__))
            return
        seconds = time.monotonic() - started
        code = None
        if not response.is_success:
            try:
                code = response.json().get("code")
            except ValueError:
                code = None
        self.recorder.add(Record(
            client.name, client.kind, round_, classify(response), response.status_code,
            started, seconds, code, response.headers.get("Retry-After"),
            "" if response.is_success else response.text[:300]))


def audit(api: str, fleet: Fleet, records: list[Record]) -> tuple[list[str], list[str]]:
    """Every writer's stored state against what it sent and what was acknowledged:
    (problems, notes). A note is a request stored whole though no answer came back."""
    found: list[str] = []
    with httpx.Client(timeout=120) as http:
        for writer in fleet.writers:
            found += writer.audit(http, api, records)
    notes = {f.removeprefix("NOTE ") for f in found if f.startswith("NOTE ")}
    return [f for f in found if not f.startswith("NOTE ")], sorted(notes)


def count(records: list[Record], outcome: str, kind: str | None = None) -> int:
    return sum(1 for r in records if r.outcome == outcome and kind in (None, r.kind))


def log_tracebacks(witness: WitnessProcess) -> int:
    try:
        return witness.log_path.read_text(errors="replace").count("Traceback (most recent")
    except OSError:
        return 0


# -- campaign A: kill -9 under load ---------------------------------------------------------


@dataclass
class CrashFigures:
    kills: int = 0
    audits: int = 0
    records: list[Record] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    restart_seconds: list[float] = field(default_factory=list)
    stored_unacknowledged: set[str] = field(default_factory=set)
    check_ok: bool = False
    check_output: str = ""

    @property
    def lost(self) -> int:
        return sum("LOST" in p for p in self.problems)

    @property
    def partial(self) -> int:
        return sum("PARTIAL" in p for p in self.problems)

    def summary(self) -> str:
        r = self.records
        writes = [x for x in r if x.kind != "read"]
        lines = [
            f"kills: {self.kills}, audits: {self.audits} (after every restart)",
            f"write requests: {len(writes)}, acknowledged {count(writes, ACKED)} "
            f"(full-state {count(r, ACKED, 'full-state')}, batch {count(r, ACKED, 'batch')}, "
            f"group {count(r, ACKED, 'group')}), no response {count(writes, FAILED)}, "
            f"503 {count(writes, UNAVAILABLE)}, 4xx {count(writes, REJECTED)}, "
            f"other 5xx {count(r, ERROR)}",
            f"lost: {self.lost}, partial: {self.partial}, "
            f"other problems: {len(self.problems) - self.lost - self.partial}; "
            f"unanswered requests found stored whole: {len(self.stored_unacknowledged)}",
            f"restart to healthy: max {max(self.restart_seconds, default=0):.2f} s, "
            f"mean {sum(self.restart_seconds) / max(len(self.restart_seconds), 1):.2f} s",
            f"zfs-sync db check: {'ok' if self.check_ok else 'FAILED'} "
            f"({self.check_output.strip().replace(chr(10), '; ')})",
        ]
        return "\n".join(lines + [f"  problem: {p}" for p in self.problems[:20]])


def _wait_for_ack(recorder: Recorder, kind: str | None, timeout: float = 60.0) -> None:
    before = count(recorder.snapshot(), ACKED, kind)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and count(recorder.snapshot(), ACKED, kind) == before:
        time.sleep(0.05)


def run_crash_campaign(
    data_dir: Path, database_url: str, kills: int, *, seed: int = 7, min_delay: float = 0.3,
    max_delay: float = 2.5, progress: Callable[[str], None] | None = None, **fleet_args: Any,
) -> CrashFigures:
    """Kill the witness with SIGKILL ``kills`` times under load, restart it on the same
    database and port each time, and audit every client's state after each restart."""
    rng = random.Random(seed)
    witness = WitnessProcess(data_dir, database_url)
    figures = CrashFigures()
    witness.start()
    try:
        fleet = make_fleet(witness.api, **fleet_args)
        load = Load(witness.api, fleet, timeout=120)
        load.start()
        for kill in range(1, kills + 1):
            # After at least one new acknowledged full report (so every round has something
            # to lose, even on a slow machine), a random delay: the kill lands anywhere.
            _wait_for_ack(load.recorder, "full-state" if fleet_args.get("full", 3) else None)
            time.sleep(rng.uniform(min_delay, max_delay))
            load.gate.close()
            witness.kill9()
            load.gate.drain()  # requests in flight fail at once: their server is gone
            figures.kills += 1
            figures.restart_seconds.append(witness.start())
            problems, notes = audit(witness.api, fleet, load.recorder.snapshot())
            figures.problems += problems
            figures.stored_unacknowledged.update(notes)
            figures.audits += 1
            if progress:
                records = load.recorder.snapshot()
                progress(f"kill {kill}/{kills}: {count(records, ACKED)} acknowledged so far, "
                         f"{len(figures.problems)} problems")
            if kill < kills:
                load.gate.open()
        figures.records = load.finish()
    finally:
        witness.stop()
    result = witness.db_check()
    figures.check_ok = result.returncode == 0
    figures.check_output = result.stdout + result.stderr
    return figures


# -- campaign B: PostgreSQL restarted under load ---------------------------------------------


@dataclass
class RestartFigures:
    restarts: int = 0
    records: list[Record] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    recovery_seconds: list[float] = field(default_factory=list)
    same_process: bool = True
    stored_unacknowledged: int = 0
    tracebacks: int = 0

    @property
    def unavailable(self) -> list[Record]:
        return [r for r in self.records if r.outcome == UNAVAILABLE]

    @property
    def malformed_503(self) -> list[Record]:
        return [r for r in self.unavailable
                if r.code != "E_DATABASE_UNAVAILABLE" or not r.retry_after]

    @property
    def errors(self) -> list[Record]:
        """Anything but 2xx and a clean 503: no response, a timeout, a 500, a 4xx."""
        return [r for r in self.records if r.outcome not in (ACKED, UNAVAILABLE)]

    def summary(self) -> str:
        r = self.records
        seconds = sorted(x.seconds for x in self.unavailable)
        p50 = seconds[len(seconds) // 2] if seconds else 0.0
        lines = [
            f"restarts: {self.restarts}, same witness process throughout: {self.same_process}",
            f"requests: {len(r)}, 2xx {count(r, ACKED)} (writes "
            f"{sum(1 for x in r if x.outcome == ACKED and x.kind != 'read')}), "
            f"503 {len(self.unavailable)} (malformed: {len(self.malformed_503)})",
            f"503 latency: median {p50 * 1000:.0f} ms, max {max(seconds, default=0) * 1000:.0f} ms",
            f"errors other than 503: {len(self.errors)} "
            f"({', '.join(sorted({f'{x.status or x.detail}' for x in self.errors})) or 'none'})",
            "recovery after PostgreSQL is back (first 2xx): "
            + ", ".join(f"{s:.2f} s" for s in self.recovery_seconds),
            f"lost: {sum('LOST' in p for p in self.problems)}, "
            f"partial: {sum('PARTIAL' in p for p in self.problems)}, "
            f"tracebacks in the witness log: {self.tracebacks}",
        ]
        return "\n".join(lines + [f"  problem: {p}" for p in self.problems[:20]])


def _wait_recovered(api: str, timeout: float = 60.0) -> float:
    """Seconds until a read that needs the database answers 2xx."""
    began = time.monotonic()
    with httpx.Client(timeout=10) as http:
        while time.monotonic() - began < timeout:
            try:
                if http.get(f"{api}/snapshots", params={"limit": 1}).is_success:
                    return time.monotonic() - began
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    raise RuntimeError(f"the witness did not recover within {timeout} s")


def run_pg_restart_campaign(
    data_dir: Path, postgres: PrivatePostgres, restarts: int, *, down_seconds: float = 3.0,
    load_seconds: float = 2.0, timeout: float = 15.0,
    progress: Callable[[str], None] | None = None, **fleet_args: Any,
) -> RestartFigures:
    """Stop PostgreSQL (fast mode) under load, keep it down, start it again; the witness
    process keeps running throughout. Audits every writer at the end."""
    witness = WitnessProcess(data_dir, postgres.url)
    figures = RestartFigures()
    witness.start()
    assert witness.process is not None
    pid = witness.process.pid
    try:
        fleet = make_fleet(witness.api, **fleet_args)
        load = Load(witness.api, fleet, timeout=timeout)
        load.start()
        for restart in range(1, restarts + 1):
            time.sleep(load_seconds)
            postgres.stop("fast")
            time.sleep(down_seconds)
            postgres.start()
            figures.restarts += 1
            figures.recovery_seconds.append(_wait_recovered(witness.api))
            if progress:
                progress(f"restart {restart}/{restarts}: recovered in "
                         f"{figures.recovery_seconds[-1]:.2f} s")
        time.sleep(load_seconds)
        figures.records = load.finish()
        figures.same_process = witness.alive() and witness.process.pid == pid
        figures.problems, notes = audit(witness.api, fleet, figures.records)
        figures.stored_unacknowledged = len(notes)
    finally:
        witness.stop()
    figures.tracebacks = log_tracebacks(witness)
    return figures
