"""Dataset summaries stay equal to what a recount of the snapshots gives, on every write path."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from tests.conftest import Witness
from zfs_sync.storage.models import Dataset, Snapshot


def _summaries(witness: Witness, system_id: str) -> dict[str, tuple[int, Any, bool]]:
    with witness.db.read() as session:
        rows = session.execute(
            select(Dataset.name, Dataset.snapshot_count, Dataset.newest_timestamp, Dataset.reported)
            .where(Dataset.system_id == system_id)
        )
        return {name: (count, newest, reported) for name, count, newest, reported in rows}


def _recount(witness: Witness, system_id: str) -> dict[str, tuple[int, Any]]:
    with witness.db.read() as session:
        rows = session.execute(
            select(Snapshot.dataset, func.count(), func.max(Snapshot.timestamp))
            .where(Snapshot.system_id == system_id).group_by(Snapshot.dataset)
        )
        return {dataset: (count, newest) for dataset, count, newest in rows}


def _check(witness: Witness, system_id: str) -> None:
    summaries = _summaries(witness, system_id)
    recount = _recount(witness, system_id)
    for dataset, (count, newest) in recount.items():
        assert summaries[dataset][:2] == (count, newest), dataset
    for name, (count, _, reported) in summaries.items():
        if name not in recount:
            assert count == 0 and reported, f"{name}: an implied row outlived its snapshots"


def _snap(name: str, ts: int, dataset: str = "tank/a") -> dict[str, Any]:
    return {"dataset": dataset, "name": name, "timestamp": ts}


def test_summaries_follow_every_write_path(witness: Witness) -> None:
    system_id, headers = witness.register("alpha")
    url = f"/api/v1/systems/{system_id}/snapshots"
    full = {"snapshots": [_snap("s1", 100), _snap("s2", 200), _snap("t1", 50, "tank/b")],
            "datasets": [{"name": "tank/a"}, {"name": "tank/empty"}]}
    assert witness.client.put(url, json=full, headers=headers).status_code == 200
    _check(witness, system_id)
    summaries = _summaries(witness, system_id)
    assert summaries["tank/a"][0] == 2 and summaries["tank/a"][2] is True
    assert summaries["tank/b"][2] is False  # implied by its snapshot
    assert summaries["tank/empty"][:2] == (0, None)

    one = {**_snap("s3", 300), "system_id": system_id}
    created = witness.client.post("/api/v1/snapshots", json=one, headers=headers)
    assert created.status_code == 201
    batch = [{**_snap("t2", 400, "tank/b"), "system_id": system_id}]
    assert witness.client.post("/api/v1/snapshots/batch", json=batch, headers=headers).status_code == 200
    _check(witness, system_id)
    assert _summaries(witness, system_id)["tank/a"][0] == 3

    assert witness.client.delete(f"/api/v1/snapshots/{created.json()['id']}", headers=headers).status_code == 204
    _check(witness, system_id)

    pruned = {"snapshots": [_snap("s2", 200)], "scope": ["tank/a", "tank/b"]}
    assert witness.client.put(url, json=pruned, headers=headers).status_code == 200
    _check(witness, system_id)
    assert "tank/b" not in _summaries(witness, system_id)  # implied, and its snapshots are gone
    assert "tank/empty" in _summaries(witness, system_id)  # reported, out of scope


def test_a_snapshot_reported_twice_counts_once(witness: Witness) -> None:
    system_id, headers = witness.register("alpha")
    body = {"snapshots": [_snap("s1", 100), _snap("s1", 100), _snap("s2", 200)]}
    url = f"/api/v1/systems/{system_id}/snapshots"
    assert witness.client.put(url, json=body, headers=headers).status_code == 200
    _check(witness, system_id)
    assert _summaries(witness, system_id)["tank/a"][0] == 2
