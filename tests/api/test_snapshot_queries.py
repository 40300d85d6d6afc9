"""Reading snapshots: lists and filters, one snapshot, history, statistics, differences, gaps."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.conftest import ADMIN, Witness
from zfs_sync.storage.common import new_id
from zfs_sync.storage.models import GroupMember, SyncGroup

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)
SNAPSHOTS = "/api/v1/snapshots"


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def report(witness: Witness, system_id: str, items: list[tuple[str, str, Any, datetime]]) -> None:
    """Full report of (dataset, name, guid, creation) tuples."""
    snapshots = [
        {"dataset": dataset, "name": name, "guid": guid, "timestamp": iso(created), "used": 10}
        for dataset, name, guid, created in items
    ]
    response = witness.client.put(
        f"/api/v1/systems/{system_id}/snapshots", json={"snapshots": snapshots}, headers=ADMIN
    )
    assert response.status_code == 200, response.text


def set_roots(witness: Witness, roots: dict[str, str | None], name: str = "g") -> None:
    """A sync group whose members have these roots (straight into the database)."""
    with witness.db.write() as session:
        group = SyncGroup(id=new_id(), name=name, description="", enabled=True,
                          sync_interval_seconds=3600, directional=False, datasets=[],
                          snapshot_pattern="", allow_rollback=False, created_at=NOW,
                          updated_at=NOW)
        session.add(group)
        session.flush()
        for system_id, root in roots.items():
            session.add(GroupMember(group_id=group.id, system_id=system_id, root=root,
                                    added_at=NOW))


def names(response: Any) -> list[str]:
    return [f"{s['dataset']}@{s['name']}" for s in response.json()]


@pytest.fixture
def fleet(witness: Witness) -> dict[str, str]:
    """alpha (pool tank) and beta (pool backup), hourly snapshots of data over three days."""
    alpha, _ = witness.register("alpha")
    beta, _ = witness.register("beta")
    report(witness, alpha, [
        ("tank/data", "d1", 1, NOW - 3 * DAY),
        ("tank/data", "d2", 2, NOW - 2 * DAY),
        ("tank/data", "d3", 3, NOW - DAY),
        ("tank/vm", "v1", 11, NOW - 2 * DAY),
    ])
    report(witness, beta, [
        ("backup/data", "d1", 1, NOW - 3 * DAY),
        ("backup/data", "d2", 2, NOW - 2 * DAY),
    ])
    witness.clock.now = NOW
    return {"alpha": alpha, "beta": beta}


def test_list_filters(witness: Witness, fleet: dict[str, str]) -> None:
    alpha, beta = fleet["alpha"], fleet["beta"]
    everything = witness.client.get(SNAPSHOTS)
    assert everything.headers["X-Total-Count"] == "6"
    assert names(everything) == [  # newest first; then by dataset and name
        "tank/data@d3", "backup/data@d2", "tank/data@d2", "tank/vm@v1", "backup/data@d1",
        "tank/data@d1",
    ]
    cases = {
        f"system_id={beta}": ["backup/data@d2", "backup/data@d1"],
        "pool=tank": ["tank/data@d3", "tank/data@d2", "tank/vm@v1", "tank/data@d1"],
        "dataset=tank/vm": ["tank/vm@v1"],
        "name=d2": ["backup/data@d2", "tank/data@d2"],
        "logical_dataset=data&name=d1": ["backup/data@d1", "tank/data@d1"],
        f"logical_dataset=data&system_id={alpha}": ["tank/data@d3", "tank/data@d2", "tank/data@d1"],
        f"since={iso(NOW - 2 * DAY)}&until={iso(NOW - DAY - timedelta(seconds=1))}":
            ["backup/data@d2", "tank/data@d2", "tank/vm@v1"],
        "since=2026-11-25T12:00:00%2B00:00": ["tank/data@d3"],
        "logical_dataset=nothing": [],
        "pool=nothing": [],
    }
    for query, expected in cases.items():
        response = witness.client.get(f"{SNAPSHOTS}?{query}")
        assert response.status_code == 200, (query, response.text)
        assert names(response) == expected, query
        assert response.headers["X-Total-Count"] == str(len(expected)), query
    listed = witness.client.get(f"{SNAPSHOTS}?system_id={beta}").json()[0]
    assert (listed["logical_dataset"], listed["guid"], listed["size"]) == ("data", "2", 10)


def test_list_pagination_and_bad_filters(witness: Witness, fleet: dict[str, str]) -> None:
    pages = [witness.client.get(f"{SNAPSHOTS}?limit=4&offset={offset}") for offset in (0, 4, 8)]
    assert [len(p.json()) for p in pages] == [4, 2, 0]
    assert all(p.headers["X-Total-Count"] == "6" for p in pages)
    everything = names(witness.client.get(f"{SNAPSHOTS}?limit=1000"))
    assert names(pages[0]) + names(pages[1]) == everything
    for query in ("limit=0", "limit=1001", "offset=-1", "since=soon", "pool=a;b",
                  "dataset=tank/$x", "name=a|b", "logical_dataset=/data"):
        response = witness.client.get(f"{SNAPSHOTS}?{query}")
        assert response.status_code == 422, query


def test_get_one_and_unknown_ids(witness: Witness, fleet: dict[str, str]) -> None:
    first = witness.client.get(f"{SNAPSHOTS}?name=v1").json()[0]
    one = witness.client.get(f"{SNAPSHOTS}/{first['id']}")
    assert one.status_code == 200 and one.json() == first
    for path in (f"{SNAPSHOTS}/nope", f"{SNAPSHOTS}/history/nope",
                 f"{SNAPSHOTS}/statistics/nope"):
        response = witness.client.get(path)
        assert response.status_code == 404, path
        assert response.json()["code"] in ("E_SNAPSHOT_NOT_FOUND", "E_SYSTEM_NOT_FOUND")
    differences = witness.client.get(
        f"{SNAPSHOTS}/differences?system_id_1={fleet['alpha']}&system_id_2=nope")
    assert differences.status_code == 404 and differences.json()["code"] == "E_SYSTEM_NOT_FOUND"
    gaps = witness.client.get(f"{SNAPSHOTS}/gaps?logical_dataset=data&system_ids=nope")
    assert gaps.status_code == 404


def test_history(witness: Witness, fleet: dict[str, str]) -> None:
    alpha = fleet["alpha"]
    recent = witness.client.get(f"{SNAPSHOTS}/history/{alpha}?days=2")
    assert names(recent) == ["tank/data@d3", "tank/data@d2", "tank/vm@v1"]
    assert recent.headers["X-Total-Count"] == "3"
    assert names(witness.client.get(f"{SNAPSHOTS}/history/{alpha}?days=1")) == ["tank/data@d3"]
    default = witness.client.get(f"{SNAPSHOTS}/history/{alpha}")  # 30 days
    assert len(default.json()) == 4
    one = witness.client.get(f"{SNAPSHOTS}/history/{alpha}?dataset=tank/data&limit=1&offset=1")
    assert names(one) == ["tank/data@d2"] and one.headers["X-Total-Count"] == "3"
    witness.clock.now = NOW + 60 * DAY
    assert witness.client.get(f"{SNAPSHOTS}/history/{alpha}").json() == []
    assert witness.client.get(f"{SNAPSHOTS}/history/{alpha}?days=0").status_code == 422


def test_statistics(witness: Witness, fleet: dict[str, str]) -> None:
    stats = witness.client.get(f"{SNAPSHOTS}/statistics/{fleet['alpha']}?days=2").json()
    assert stats["total_snapshots"] == 4 and stats["total_size"] == 40
    assert stats["dataset_count"] == 2
    assert stats["snapshots_by_dataset"] == {"tank/data": 3, "tank/vm": 1}
    assert stats["datasets"][0] == {
        "dataset": "tank/data", "count": 3, "total_size": 30,
        "oldest": iso(NOW - 3 * DAY), "newest": iso(NOW - DAY),
    }
    assert (stats["oldest_snapshot"], stats["newest_snapshot"]) == (
        iso(NOW - 3 * DAY), iso(NOW - DAY))
    assert (stats["snapshots_in_period"], stats["size_in_period"]) == (3, 30)
    assert (stats["period_days"], stats["period_start"]) == (2, iso(NOW - 2 * DAY))
    gamma, _ = witness.register("gamma")
    empty = witness.client.get(f"{SNAPSHOTS}/statistics/{gamma}").json()
    assert (empty["total_snapshots"], empty["oldest_snapshot"], empty["datasets"]) == (0, None, [])


def test_differences_by_logical_dataset(witness: Witness, fleet: dict[str, str]) -> None:
    alpha, beta = fleet["alpha"], fleet["beta"]
    url = f"{SNAPSHOTS}/differences?system_id_1={alpha}&system_id_2={beta}"
    body = witness.client.get(url).json()
    assert (body["root_1"], body["root_2"]) == ("tank", "backup")
    by_name = {d["logical_dataset"]: d for d in body["datasets"]}
    data = by_name["data"]
    assert (data["dataset_1"], data["dataset_2"]) == ("tank/data", "backup/data")
    assert [s["name"] for s in data["only_on_1"]] == ["d3"] and data["only_on_2"] == []
    assert (data["common_count"], data["diverged"], data["in_sync"]) == (2, [], False)
    assert by_name["vm"]["dataset_2"] is None and by_name["vm"]["only_on_1"][0]["guid"] == "11"
    only = witness.client.get(f"{url}&logical_dataset=data").json()["datasets"]
    assert [d["logical_dataset"] for d in only] == ["data"]


def test_differences_identity_guid_then_name(witness: Witness) -> None:
    alpha, _ = witness.register("alpha")
    beta, _ = witness.register("beta")
    big = 2**64 - 5
    report(witness, alpha, [
        ("tank/data", "same", big, NOW - 5 * DAY),
        ("tank/data", "renamed-here", 7, NOW - 4 * DAY),  # same guid, other name: same snapshot
        ("tank/data", "no-guid", None, NOW - 3 * DAY),    # a guid on one side only: by name
        ("tank/data", "forked", 8, NOW - 2 * DAY),        # same name, other guid: diverged
        ("tank/data", "mine", 9, NOW - DAY),
    ])
    report(witness, beta, [
        ("tank/data", "same", big, NOW - 5 * DAY),
        ("tank/data", "renamed-there", 7, NOW - 4 * DAY),
        ("tank/data", "no-guid", 100, NOW - 3 * DAY),
        ("tank/data", "forked", 80, NOW - 2 * DAY),
        ("tank/data", "theirs", 10, NOW - DAY),
    ])
    body = witness.client.get(
        f"{SNAPSHOTS}/differences?system_id_1={alpha}&system_id_2={beta}&logical_dataset=data"
    ).json()
    (data,) = body["datasets"]
    assert data["common_count"] == 3
    assert data["diverged"] == [{"name": "forked", "guid_1": "8", "guid_2": "80"}]
    assert [s["name"] for s in data["only_on_1"]] == ["mine"]
    assert [s["name"] for s in data["only_on_2"]] == ["theirs"]


def test_roots_come_from_group_members(witness: Witness) -> None:
    alpha, _ = witness.register("alpha")
    beta, _ = witness.register("beta")
    report(witness, alpha, [("tank/data", "s1", 1, NOW), ("tank/other", "s1", 5, NOW)])
    report(witness, beta, [("pool/backup/alpha/data", "s1", 1, NOW),
                           ("pool/backup/alpha/data", "s2", 2, NOW), ("pool/misc", "x", 3, NOW)])
    set_roots(witness, {alpha: None, beta: "pool/backup/alpha"})
    url = f"{SNAPSHOTS}/differences?system_id_1={alpha}&system_id_2={beta}"
    body = witness.client.get(url).json()
    assert (body["root_1"], body["root_2"]) == ("tank", "pool/backup/alpha")
    assert {d["logical_dataset"]: d["common_count"] for d in body["datasets"]} == {
        "data": 1, "other": 0}
    gaps = witness.client.get(f"{SNAPSHOTS}/gaps?logical_dataset=data").json()
    assert {g["system_id"]: g["dataset"] for g in gaps["systems"]} == {
        alpha: "tank/data", beta: "pool/backup/alpha/data"}


def test_unknown_root_is_409_and_no_snapshots_is_empty(witness: Witness) -> None:
    alpha, _ = witness.register("alpha")
    two_pools, _ = witness.register("beta")
    empty, _ = witness.register("gamma")
    report(witness, alpha, [("tank/data", "s1", 1, NOW)])
    report(witness, two_pools, [("tank/data", "s1", 1, NOW), ("rpool/data", "s1", 2, NOW)])
    conflict = witness.client.get(
        f"{SNAPSHOTS}/differences?system_id_1={alpha}&system_id_2={two_pools}")
    assert conflict.status_code == 409 and conflict.json()["code"] == "E_ROOT_UNKNOWN"
    gaps = witness.client.get(f"{SNAPSHOTS}/gaps?logical_dataset=data&system_ids={two_pools}")
    assert gaps.status_code == 409
    nothing = witness.client.get(
        f"{SNAPSHOTS}/differences?system_id_1={alpha}&system_id_2={empty}").json()
    assert nothing["root_2"] is None and nothing["datasets"][0]["only_on_1"][0]["name"] == "s1"
    set_roots(witness, {two_pools: "rpool"})
    resolved = witness.client.get(
        f"{SNAPSHOTS}/differences?system_id_1={alpha}&system_id_2={two_pools}").json()
    assert resolved["root_2"] == "rpool"
    assert resolved["datasets"][0]["diverged"] == [{"name": "s1", "guid_1": "1", "guid_2": "2"}]


def test_gaps_against_the_union(witness: Witness) -> None:
    a, _ = witness.register("alpha")
    b, _ = witness.register("beta")
    c, _ = witness.register("gamma")
    d, _ = witness.register("delta")  # holds no snapshots
    report(witness, a, [("tank/data", "s1", 1, NOW - 3 * DAY),
                        ("tank/data", "s2", 2, NOW - 2 * DAY)])
    report(witness, b, [("backup/data", "s2", 2, NOW - 2 * DAY),
                        ("backup/data", "s3", 3, NOW - DAY)])
    report(witness, c, [("rpool/data", "s1", None, NOW - 3 * DAY), ("rpool/other", "x", 9, NOW)])
    set_roots(witness, {c: "rpool"})
    default = witness.client.get(f"{SNAPSHOTS}/gaps?logical_dataset=data").json()
    assert default["union_count"] == 3
    missing = {g["system_id"]: [m["name"] for m in g["missing"]] for g in default["systems"]}
    assert missing == {a: ["s3"], b: ["s1"], c: ["s2", "s3"]}
    counts = {g["system_id"]: (g["snapshot_count"], g["missing_count"]) for g in default["systems"]}
    assert counts == {a: (2, 1), b: (2, 1), c: (1, 2)}
    for query in (f"system_ids={a}&system_ids={d}", f"system_ids={a},{d}", f"system_ids={a}, {d}"):
        chosen = witness.client.get(f"{SNAPSHOTS}/gaps?logical_dataset=data&{query}").json()
        assert {g["system_id"]: g["missing_count"] for g in chosen["systems"]} == {a: 0, d: 2}
        assert chosen["systems"][[g["system_id"] for g in chosen["systems"]].index(d)][
            "dataset"] is None
    assert witness.client.get(f"{SNAPSHOTS}/gaps").status_code == 422
    assert witness.client.get(f"{SNAPSHOTS}/gaps?logical_dataset=x;y").status_code == 422


def test_fixed_paths_are_not_taken_for_ids(witness: Witness) -> None:
    for path in ("differences", "gaps"):  # parameters missing, not "no snapshot 'gaps'"
        assert witness.client.get(f"{SNAPSHOTS}/{path}").status_code == 422
    for path in ("history", "statistics"):
        response = witness.client.get(f"{SNAPSHOTS}/{path}/x")
        assert response.json()["code"] == "E_SYSTEM_NOT_FOUND"
