"""Simulated agents for the load and soak tests: what ``zfs-sync-agent run`` sends, without ZFS.

Each ``SimHost`` holds, in memory, the snapshots a host would list: ``datasets`` datasets
(``<pool>/data/dsNNN``) of ``snapshots`` sanoid-style snapshots each, spaced 15 minutes and
ending now, with random 64-bit guids. ``SimAgent.cycle`` mirrors ``Agent.run_cycle`` in
``src/zfs_sync/agent/cycle.py`` request by request:

1. sanoid: a new snapshot of every dataset, and the oldest beyond the retention expired unless
   ``GET /systems/{id}/protected-snapshots`` protects it (the ``may-destroy`` hook); then
   ``PUT /systems/{id}/snapshots`` with the full state;
2. ``POST /systems/{id}/heartbeat`` (version, capabilities, interval);
3. ``GET /sync/instructions/{id}``; for each action, in ``sequence`` order per target dataset:
   ``POST /sync/states`` ``syncing``, the "transfer" (the snapshots are copied from the source
   host's memory: a full send brings one snapshot, ``-I`` every one between base and
   snapshot), ``POST /sync/states`` ``in_sync`` (or ``error`` when the source no longer has
   the snapshot), then a scoped re-report of the changed datasets;
4. ``POST /systems/{id}/heartbeat``.

Every request is timed per endpoint (``Stats``). What the witness acknowledged is remembered
(``acked``: each dataset's snapshots at its last acknowledged report; ``edges``: the last
acknowledged state report of each edge), and ``audit`` compares that with what the witness
serves back through the API.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import orjson

SPACING = 900  # seconds between the initial snapshots ("frequently" every 15 minutes)
CAPABILITIES = {"compressed_send": True, "raw_send": True, "resumable_receive": True,
                "receive_o": True, "bookmarks": True, "holds": True}
AGENT_VERSION = "load-sim"
# The real agent retries a request that got no answer after 1, 2 and 4 s; then it gives up.
TRANSPORT_RETRIES = (1.0, 2.0, 4.0, None)

# --- the host's state ---------------------------------------------------------------------


def _fragment(rng: random.Random, ts: int, txg: int) -> bytes:
    """A snapshot item without its dataset: ``"name":...,...}`` (the dataset is prefixed when
    a body is built, so a received copy can carry the target's dataset name)."""
    stamp = time.strftime("%Y-%m-%d_%H:%M:%S", time.gmtime(ts))
    return (f'"name":"autosnap_{stamp}_frequently","timestamp":{ts},'
            f'"guid":"{rng.getrandbits(64)}","createtxg":{txg},'
            f'"used":{rng.randrange(0, 4 << 30)},"referenced":{rng.randrange(1 << 20, 64 << 30)}}}'
            ).encode()


def fragment_name(fragment: bytes) -> str:
    end = fragment.index(b'"', 8)
    return fragment[8:end].decode()


@dataclass
class SimHost:
    """One host's datasets: per dataset its snapshot items, oldest first."""

    hostname: str
    pool: str
    keep: int  # snapshots kept per dataset (sanoid's retention)
    rng: random.Random
    snapshots: dict[str, deque[bytes]] = field(default_factory=dict)
    last: dict[str, tuple[int, int]] = field(default_factory=dict)  # dataset -> (ts, txg)

    @classmethod
    def create(cls, index: int, datasets: int, snapshots: int, seed: int,
               now: float) -> SimHost:
        pool = ("tank", "rpool", "backup")[index % 3]
        host = cls(f"load-host-{index:03d}", pool, snapshots, random.Random(seed * 7919 + index))
        start = int(now) - snapshots * SPACING
        for j in range(datasets):
            name = f"{pool}/data/ds{j:03d}"
            txg = host.rng.randrange(1000, 100_000)
            items: deque[bytes] = deque()
            for k in range(snapshots):
                txg += host.rng.randrange(1, 500)
                ts = start + k * SPACING + host.rng.randrange(60)
                items.append(_fragment(host.rng, ts, txg))
            host.snapshots[name] = items
            host.last[name] = (start + (snapshots - 1) * SPACING + 59, txg)
        return host

    def own_datasets(self) -> list[str]:
        return [d for d in self.snapshots if d.startswith(f"{self.pool}/data/")]

    def rotate(self, now: float, protected: set[tuple[str, str]] | None) -> None:
        """sanoid: a new snapshot on every own dataset, then on every dataset the oldest
        beyond ``keep`` expired, except those the witness protects (the ``may-destroy``
        pre-pruning hook); ``protected`` None (the witness did not answer): expire none."""
        for dataset in self.own_datasets():
            ts, txg = self.last[dataset]
            ts, txg = max(int(now), ts + 1), txg + self.rng.randrange(1, 500)
            self.last[dataset] = (ts, txg)
            self.snapshots[dataset].append(_fragment(self.rng, ts, txg))
        if protected is None:
            return
        for dataset, items in self.snapshots.items():
            excess = len(items) - self.keep
            if excess <= 0:
                continue
            kept: deque[bytes] = deque()
            for position, item in enumerate(items):
                if position >= excess or (dataset, fragment_name(item)) in protected:
                    kept.append(item)
            self.snapshots[dataset] = kept

    def view(self, only: Iterable[str] | None = None) -> dict[str, tuple[bytes, ...]]:
        """The snapshots a report would carry, frozen (what the witness acknowledges)."""
        names = self.snapshots if only is None else only
        return {d: tuple(self.snapshots[d]) for d in names}

    def body(self, view: dict[str, tuple[bytes, ...]], scope: list[str] | None) -> bytes:
        """A full-state (or scoped) report body, as ``report_body`` in agent/inventory.py."""
        parts: list[bytes] = []
        for dataset, items in view.items():
            prefix = b'{"dataset":"' + dataset.encode() + b'",'
            parts.extend(prefix + item for item in items)
        records = [{"name": d, "encryption": False, "receive_resume_token": None} for d in view]
        tail: dict[str, Any] = {"datasets": records}
        if scope is not None:
            tail["scope"] = scope
        return b'{"snapshots":[' + b",".join(parts) + b"]," + orjson.dumps(tail)[1:]

    def receive(self, action: dict[str, Any], source: SimHost) -> int:
        """Copy what the action's ``zfs send`` would bring; the bytes "moved".

        Raises KeyError when the source no longer has a snapshot the action names (the source
        expired it after the witness planned)."""
        items = list(source.snapshots[action["source_dataset"]])
        names = [fragment_name(item) for item in items]
        end = names.index(action["snapshot_name"])
        begin = end
        if action.get("is_incremental") and action.get("include_intermediate"):
            begin = names.index(action["incremental_base"]) + 1
        elif action.get("is_incremental") and action["incremental_base"] not in names:
            raise KeyError(action["incremental_base"])
        target = self.snapshots.setdefault(action["target_dataset"], deque())
        if action["action_type"] == "full_send":
            target.clear()
        have = {fragment_name(item) for item in target}
        fresh = [item for item in items[begin:end + 1] if fragment_name(item) not in have]
        target.extend(fresh)  # expired by the next rotate(), as sanoid does on a target
        return sum(len(item) for item in fresh) * 1000  # a stand-in stream size


# --- timing -------------------------------------------------------------------------------


@dataclass
class Stats:
    """Per-endpoint latencies and status counts, and every 'database is locked' seen."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    statuses: dict[str, dict[str, int]] = field(default_factory=dict)
    locked_responses: int = 0
    retried: int = 0  # requests sent again after a transport error (counted once, answered)
    samples: list[str] = field(default_factory=list)  # a few failing responses, for the report

    def record(self, endpoint: str, seconds: float, status: str, text: str = "") -> None:
        self.latencies.setdefault(endpoint, []).append(seconds)
        counts = self.statuses.setdefault(endpoint, {})
        counts[status] = counts.get(status, 0) + 1
        if "database is locked" in text:
            self.locked_responses += 1
        if text and not status.startswith("2") and len(self.samples) < 20:
            self.samples.append(f"{endpoint} {status}: {text[:300]}")

    def count(self, prefix: str = "") -> int:
        return sum(n for c in self.statuses.values() for s, n in c.items() if s.startswith(prefix))

    def table(self) -> list[dict[str, Any]]:
        rows = []
        for endpoint in sorted(self.latencies):
            times = sorted(self.latencies[endpoint])
            rows.append({
                "endpoint": endpoint,
                "count": len(times),
                "statuses": dict(sorted(self.statuses[endpoint].items())),
                "p50_ms": round(_quantile(times, 0.50) * 1000, 1),
                "p99_ms": round(_quantile(times, 0.99) * 1000, 1),
                "max_ms": round(times[-1] * 1000, 1),
            })
        return rows


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


# --- one agent ----------------------------------------------------------------------------


@dataclass
class Edge:
    """One (group, logical dataset, target) edge: its last acknowledged state report, and
    the figures of the last acknowledged report that carried figures."""

    state_id: str
    status: str
    bytes_transferred: int | None
    duration_seconds: float | None


class SimAgent:
    def __init__(self, host: SimHost, system_id: str, api_key: str, client: httpx.AsyncClient,
                 stats: Stats, hosts: dict[str, SimHost], interval: float) -> None:
        self.host, self.system_id, self.client, self.stats = host, system_id, client, stats
        self.headers = {"X-API-Key": api_key, "Content-Type": "application/json"}
        self.hosts = hosts  # system id -> host: where a "transfer" reads the source from
        self.interval = interval
        self.acked: dict[str, tuple[bytes, ...]] = {}
        self.edges: dict[str, Edge] = {}
        self.cycles = 0
        self.snapshots_reported = 0
        self.transfers = 0
        self.transfer_errors = 0
        self.other_actions = 0

    async def call(self, endpoint: str, method: str, path: str,
                   content: bytes | None = None) -> httpx.Response | None:
        started = time.perf_counter()
        for delay in TRANSPORT_RETRIES:  # as the real agent (agent/client.py) does
            try:
                response = await self.client.request(method, path, content=content,
                                                     headers=self.headers)
                break
            except httpx.TransportError as exc:
                if delay is None:
                    self.stats.record(endpoint, time.perf_counter() - started, "transport",
                                      f"{type(exc).__name__}: {exc}")
                    return None
                self.stats.retried += 1
                await asyncio.sleep(delay)
        elapsed = time.perf_counter() - started
        text = "" if response.is_success else response.text
        self.stats.record(endpoint, elapsed, str(response.status_code), text)
        return response

    async def report(self, scope: list[str] | None = None) -> None:
        # As the real agent: the scope names every changed dataset, the body only those that
        # exist (a failed first receive leaves none, and the witness forgets it).
        view = self.host.view(None if scope is None
                              else [d for d in scope if d in self.host.snapshots])
        body = self.host.body(view, scope)
        endpoint = "PUT /systems/{id}/snapshots" + (" (scoped)" if scope else "")
        response = await self.call(endpoint, "PUT", f"/systems/{self.system_id}/snapshots", body)
        if response is not None and response.is_success:
            if scope is None:
                self.acked = view
            else:
                self.acked.update({d: view.get(d, ()) for d in scope})
            self.snapshots_reported += sum(len(v) for v in view.values())

    async def heartbeat(self) -> None:
        body = orjson.dumps({"agent_version": AGENT_VERSION, "zfs_path": "zfs",
                             "capabilities": CAPABILITIES,
                             "interval_seconds": max(60, int(self.interval))})
        await self.call("POST /systems/{id}/heartbeat", "POST",
                        f"/systems/{self.system_id}/heartbeat", body)

    async def claim(self, action: dict[str, Any], status: str, message: str | None = None,
                    moved: int | None = None, seconds: float | None = None) -> None:
        body: dict[str, Any] = {"sync_group_id": action["sync_group_id"],
                                "system_id": self.system_id, "status": status,
                                "action_id": action["action_id"]}
        if action.get("snapshot_id"):
            body["snapshot_id"] = action["snapshot_id"]
        else:
            body["dataset"] = action["dataset"]
        if message:
            body["error_message"] = message
        if moved is not None:
            body["bytes_transferred"] = moved
        if seconds is not None:
            body["duration_seconds"] = seconds
        response = await self.call("POST /sync/states", "POST", "/sync/states",
                                   orjson.dumps(body))
        if response is not None and response.is_success:
            ident = response.json()["id"]
            edge = self.edges.setdefault(ident, Edge(ident, status, None, None))
            edge.status = status
            if moved is not None:  # a report without figures leaves the stored ones alone
                edge.bytes_transferred, edge.duration_seconds = moved, seconds

    async def sync(self) -> None:
        response = await self.call("GET /sync/instructions/{id}", "GET",
                                   f"/sync/instructions/{self.system_id}")
        if response is None or not response.is_success:
            return
        chains: dict[str, list[dict[str, Any]]] = {}
        for action in response.json()["actions"]:
            chains.setdefault(action["target_dataset"], []).append(action)
        changed = []
        for target in sorted(chains, key=lambda t: (t.count("/"), t)):
            if await self.run_chain(sorted(chains[target], key=lambda a: a["sequence"])):
                changed.append(target)
        if changed:
            await self.report(changed)

    async def run_chain(self, chain: list[dict[str, Any]]) -> bool:
        """Run one target dataset's actions in order, stopping at the first failure."""
        touched = False
        for action in chain:
            source = self.hosts.get(action["source_system_id"])
            if action["action_type"] not in ("full_send", "incremental_send"):
                self.other_actions += 1  # rollback/rename: only after a conflict
                return touched
            if source is None or not action.get("source_ssh_hostname"):
                return touched  # the real agent skips a transfer with no way to the source
            await self.claim(action, "syncing")
            touched = True
            started = time.perf_counter()
            try:
                moved = self.host.receive(action, source)
            except (KeyError, ValueError):
                self.transfer_errors += 1
                await self.claim(action, "error", "simulated: the source no longer has "
                                 f"{action['snapshot_name']} or {action['incremental_base']}")
                return touched
            self.transfers += 1
            # Unique per report, so the audit can tell which report the witness kept.
            moved += self.host.rng.randrange(1000)
            seconds = round(time.perf_counter() - started + self.host.rng.random(), 3)
            await self.claim(action, "in_sync", moved=moved, seconds=seconds)
        return touched

    async def protected(self) -> set[tuple[str, str]] | None:
        """What sanoid's ``may-destroy`` hook asks before pruning (None: no answer)."""
        response = await self.call("GET /systems/{id}/protected-snapshots", "GET",
                                   f"/systems/{self.system_id}/protected-snapshots")
        if response is None or not response.is_success:
            return None
        return {(p["dataset"], p["snapshot"]) for p in response.json()["snapshots"]}

    async def cycle(self) -> None:
        """sanoid (snapshot, then prune what the witness does not protect), then
        ``Agent.run_cycle``: report, heartbeat, sync (with its re-report), heartbeat."""
        self.host.rotate(time.time(), await self.protected())
        await self.report()
        await self.heartbeat()
        await self.sync()
        await self.heartbeat()
        self.cycles += 1

    async def run(self, deadline: float, jitter: float = 0.5) -> None:
        """Cycles until ``deadline`` (monotonic): one every ``interval`` s, jittered by
        +-``jitter`` of it, with a random first start so agents do not march in step;
        ``interval`` 0 is closed loop (the next cycle as soon as one ends)."""
        rng = self.host.rng
        if self.interval > 0:
            await asyncio.sleep(rng.uniform(0, min(self.interval, deadline - time.monotonic())))
        while time.monotonic() < deadline:
            started = time.monotonic()
            await self.cycle()
            if self.interval > 0:
                pause = self.interval * rng.uniform(1 - jitter, 1 + jitter)
                pause -= time.monotonic() - started
                await asyncio.sleep(max(0.0, min(pause, deadline - time.monotonic())))


# --- the audit ----------------------------------------------------------------------------


@dataclass
class AuditResult:
    agents: int = 0
    datasets: int = 0
    snapshots: int = 0
    edges: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _epoch(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())


async def stored_snapshots(
    client: httpx.AsyncClient, system_id: str, dataset: str | None = None
) -> tuple[dict[str, list[tuple[str, str, int]]], int]:
    """The snapshots the witness holds for a system (or one of its datasets), through
    paginated ``GET /snapshots``, and the system's total (``X-Total-Count`` without the
    dataset filter)."""
    stored: dict[str, list[tuple[str, str, int]]] = {}
    params: dict[str, Any] = {"system_id": system_id, "limit": 1000, "offset": 0}
    if dataset is not None:
        params["dataset"] = dataset
    while True:
        response = await client.get("/snapshots", params=params)
        response.raise_for_status()
        page = response.json()
        for item in page:
            stored.setdefault(item["dataset"], []).append(
                (item["name"], str(item["guid"]), _epoch(item["timestamp"])))
        params["offset"] += len(page)
        total = int(response.headers["X-Total-Count"])
        if not page or params["offset"] >= total:
            return stored, total


async def system_total(client: httpx.AsyncClient, system_id: str) -> int:
    response = await client.get("/snapshots", params={"system_id": system_id, "limit": 1})
    response.raise_for_status()
    return int(response.headers["X-Total-Count"])


def _expected(items: tuple[bytes, ...]) -> list[tuple[str, str, int]]:
    parsed = orjson.loads(b"[{" + b",{".join(items) + b"]") if items else []
    return [(s["name"], s["guid"], s["timestamp"]) for s in parsed]


async def audit_agent(client: httpx.AsyncClient, agent: SimAgent, result: AuditResult) -> None:
    # One query per dataset (the witness serves it from its (system, dataset, time) index;
    # offset pages over a whole system sort it again for every page), then the system's
    # total, which shows any snapshot stored in a dataset the agent does not know.
    expected = {d: _expected(items) for d, items in agent.acked.items() if items}
    stored: dict[str, list[tuple[str, str, int]]] = {}
    for dataset in expected:
        found, _ = await stored_snapshots(client, agent.system_id, dataset)
        stored.update(found)
    total = await system_total(client, agent.system_id)
    if total != sum(len(v) for v in stored.values()):
        stored, _ = await stored_snapshots(client, agent.system_id)  # find the strays
    result.agents += 1
    for dataset in sorted(set(stored) | set(expected)):
        want, have = expected.get(dataset, []), stored.get(dataset, [])
        result.datasets += 1
        result.snapshots += len(want)
        if sorted(want) != sorted(have) or len(set(have)) != len(have):
            missing = sorted(set(want) - set(have))[:2]
            extra = sorted(set(have) - set(want))[:2]
            result.problems.append(
                f"{agent.host.hostname} {dataset}: acknowledged {len(want)} snapshots, "
                f"stored {len(have)} (missing e.g. {missing}, unexpected e.g. {extra})")
    for edge in agent.edges.values():
        result.edges += 1
        response = await client.get(f"/sync/states/{edge.state_id}")
        if response.status_code != 200:
            result.problems.append(f"state {edge.state_id}: GET answered "
                                   f"{response.status_code} {response.text[:200]}")
            continue
        state = response.json()
        if edge.bytes_transferred is not None and (
                state["last_transfer_bytes"] != edge.bytes_transferred
                or state["last_transfer_seconds"] != edge.duration_seconds):
            result.problems.append(
                f"state {edge.state_id} ({agent.host.hostname} {state['dataset']}): last "
                f"acknowledged transfer report had {edge.bytes_transferred} bytes / "
                f"{edge.duration_seconds} s, stored {state['last_transfer_bytes']} / "
                f"{state['last_transfer_seconds']}")


async def audit(client: httpx.AsyncClient, agents: list[SimAgent], parallel: int = 4
                ) -> AuditResult:
    """Compare what every agent had acknowledged with what the witness serves."""
    result = AuditResult()
    gate = asyncio.Semaphore(parallel)

    async def one(agent: SimAgent) -> None:
        async with gate:
            await audit_agent(client, agent, result)

    await asyncio.gather(*(one(agent) for agent in agents))
    return result
