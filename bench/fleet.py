"""A synthetic fleet, generated deterministically from a seed.

Each host has one pool with ``datasets`` datasets (``<pool>/data/dsNNN``) and ``snapshots``
sanoid-style hourly snapshots on each, reported the way the agent reports them
(``PUT /systems/{id}/snapshots``): epoch timestamps, exact byte counts, guids as decimal
strings (about half of them above 2^63), createtxg, and the dataset records.

    python bench/fleet.py --systems 2 --datasets 3 --snapshots 4 --seed 7   # print a sample
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

START = 1_780_000_000  # 2026-05-28T20:26:40Z: the first snapshot of every dataset
HOUR = 3600


@dataclass
class Host:
    hostname: str
    pool: str
    datasets: list[str]
    # per dataset, oldest first: the snapshot items exactly as they are sent
    snapshots: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        """The body of this host's full-state report."""
        return {
            "snapshots": [item for items in self.snapshots.values() for item in items],
            "datasets": [{"name": name, "encryption": False} for name in self.datasets],
        }

    @property
    def snapshot_count(self) -> int:
        return sum(len(items) for items in self.snapshots.values())


def _snapshot(rng: random.Random, dataset: str, hour: int, txg: int) -> dict[str, Any]:
    created = START + hour * HOUR + rng.randrange(60)  # sanoid runs take a few seconds
    stamp = time.strftime("%Y-%m-%d_%H:00:00", time.gmtime(created))
    return {
        "dataset": dataset,
        "name": f"autosnap_{stamp}_hourly",
        "timestamp": created,
        "guid": str(rng.getrandbits(64)),
        "createtxg": txg,
        "used": rng.randrange(0, 4 << 30),
        "referenced": rng.randrange(1 << 20, 64 << 30),
    }


def make_fleet(systems: int, datasets: int, snapshots: int, seed: int = 1) -> list[Host]:
    """``systems`` hosts x ``datasets`` datasets x ``snapshots`` snapshots, same for a seed."""
    rng = random.Random(seed)
    hosts = []
    for index in range(systems):
        pool = ("tank", "rpool", "backup")[index % 3]
        names = [f"{pool}/data/ds{j:03d}" for j in range(datasets)]
        host = Host(f"bench-host-{index:03d}", pool, names)
        for dataset in host.datasets:
            txg = rng.randrange(1000, 100_000)
            items = []
            for hour in range(snapshots):
                txg += rng.randrange(1, 500)
                items.append(_snapshot(rng, dataset, hour, txg))
            host.snapshots[dataset] = items
        hosts.append(host)
    return hosts


def next_hour(host: Host, rng: random.Random) -> Iterator[dict[str, Any]]:
    """One hourly cycle on ``host``: a new snapshot per dataset, the oldest one pruned."""
    for dataset, items in host.snapshots.items():
        hour = (items[-1]["timestamp"] - START) // HOUR + 1
        fresh = _snapshot(rng, dataset, hour, items[-1]["createtxg"] + 1)
        items.append(fresh)
        del items[0]
        yield fresh


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", type=int, default=2)
    parser.add_argument("--datasets", type=int, default=2)
    parser.add_argument("--snapshots", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for host in make_fleet(args.systems, args.datasets, args.snapshots, args.seed):
        print(json.dumps({"hostname": host.hostname, **host.report()}, indent=1))


if __name__ == "__main__":
    main()
