"""The load test (``bench/load.py``) in its reduced form: real witness processes on 127.0.0.1,
10 simulated agents x 5 datasets x 50 snapshots for 20 s, on SQLite (one witness) and on
PostgreSQL (two witnesses sharing a fresh database). Nothing here asserts timings: the run
must answer no 5xx, never say "database is locked", do real work, and pass the audit (what
the agents had acknowledged is exactly what the witness serves back)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import load  # noqa: E402
from agents import Stats, audit  # noqa: E402

PG_URL = os.environ.get("ZFS_SYNC_TEST_POSTGRES_URL")
CI_FLEET = load.Options(agents=10, datasets=5, snapshots=50, duration=20, interval=2.0,
                        groups=2, group_size=3, group_datasets=3, monitor_interval=5)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_load_keeps_every_acknowledged_report(backend: str) -> None:
    if backend == "postgres" and not PG_URL:
        pytest.skip("ZFS_SYNC_TEST_POSTGRES_URL is not set")
    options = load.Options(**{**vars(CI_FLEET), "database_url": PG_URL if backend == "postgres"
                              else None})
    figures = load.run_load(options)
    report = load.summary(figures)
    assert load.failures(figures) == [], report
    assert figures["witnesses"] == (2 if backend == "postgres" else 1)
    # Work was done: every agent cycled, reports carried whole states, transfers ran.
    assert figures["requests"] >= 150, report
    assert figures["cycles"] >= 2 * options.agents, report
    assert figures["transfers"] > 0, report
    endpoints = {row["endpoint"]: row["count"] for row in figures["endpoints"]}
    assert endpoints.get("POST /sync/states", 0) > 0, report
    assert figures["audit"]["snapshots"] >= options.agents * options.datasets * options.snapshots
    assert figures["audit"]["edges"] > 0, report


def test_audit_catches_a_snapshot_the_witness_lost() -> None:
    """The audit is not vacuous: a snapshot deleted behind the agents' back is reported, and
    so is one the agents never reported."""
    options = load.Options(agents=2, datasets=2, snapshots=3, groups=0)

    async def lose_one(fleet: load.Fleet) -> Any:
        clients = [load._client(fleet.witnesses[0].url, 4)]
        try:
            await load.setup(fleet, options, Stats(), clients)
            admin = {"X-API-Key": load.ADMIN_TOKEN}
            victim = fleet.agents[1]
            page = await clients[0].get("/snapshots", params={"system_id": victim.system_id})
            gone = page.json()[0]
            deleted = await clients[0].delete(f"/snapshots/{gone['id']}", headers=admin)
            assert deleted.status_code == 204, deleted.text
            stray = {"name": "stray", "pool": victim.host.pool, "system_id": victim.system_id,
                     "dataset": f"{victim.host.pool}/stray", "timestamp": 1_780_000_000}
            added = await clients[0].post("/snapshots", json=stray, headers=admin)
            assert added.status_code == 201, added.text
            return gone, await audit(clients[0], fleet.agents)
        finally:
            await clients[0].aclose()

    with load.fleet_witnesses(options) as fleet:
        gone, result = asyncio.run(lose_one(fleet))
    assert not result.ok
    assert len(result.problems) == 2, result.problems
    lost, stray = sorted(result.problems, key=lambda p: "/stray" in p)
    assert gone["dataset"] in lost and gone["name"] in lost
    assert "/stray: acknowledged 0 snapshots, stored 1" in stray
