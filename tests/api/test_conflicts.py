"""Conflicts over HTTP: detection, listing, resolutions and their lifecycle, events.

Uses the fleet helpers of ``test_sync.py`` (snapshot ``sNN`` is NN hours after BASE; ``own``
snapshots carry a guid only their host has).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.test_sync import (
    API,
    HOUR,
    NOW,
    Pair,
    at,
    deliver,
    events,
    group,
    host,
    instructions,
    kinds,
    pair,
    state,
    status,
)
from tests.conftest import ADMIN, Witness
from zfs_sync.storage.sync_states import conflict_id


def conflicts(witness: Witness, **params: Any) -> list[dict[str, Any]]:
    response = witness.client.get(f"{API}/conflicts", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["X-Total-Count"] == str(len(response.json()))
    return list(response.json())


def one_conflict(witness: Witness, **params: Any) -> dict[str, Any]:
    found = conflicts(witness, **params)
    assert len(found) == 1, found
    return found[0]


def resolve(witness: Witness, ident: str, strategy: str, headers: dict[str, str] | None = None,
            **extra: Any) -> Any:
    return witness.client.post(f"{API}/conflicts/{ident}/resolve",
                               json={"strategy": strategy, **extra},
                               headers=ADMIN if headers is None else headers)


def diverged(witness: Witness, **group_fields: Any) -> Pair:
    """dst has the common s20, s21 and then its own x22 (and x23); src went on to s23."""
    p = pair(witness, src_names=("s20", "s21", "s22", "s23"), dst_names=("s20", "s21"),
             **group_fields)
    p.dst.add("data", "x22", "x23", own=True)
    p.dst.report()
    return p


def no_common(witness: Witness) -> Pair:
    """dst has data, but none of src's snapshots."""
    p = pair(witness, dst_names=None)
    p.dst.add("data", "x10", "x11", own=True)
    p.dst.report()
    return p


def guid_of_dst(p: Pair, name: str) -> str:
    return str(next(s["guid"] for s in p.dst.snapshots["data"] if s["name"] == name))


# -- target_diverged ----------------------------------------------------------------------------


def test_diverged_target_is_a_conflict_without_action(witness: Witness) -> None:
    p = diverged(witness)
    found = one_conflict(witness)
    assert found["id"] == conflict_id(p.group, "data", p.dst.id, "target_diverged")
    assert {k: found[k] for k in ("sync_group_id", "dataset", "target_system_id",
                                  "source_system_id", "type", "status", "resolution")} == {
        "sync_group_id": p.group, "dataset": "data", "target_system_id": p.dst.id,
        "source_system_id": p.src.id, "type": "target_diverged", "status": "open",
        "resolution": None,
    }
    details = found["details"]
    assert details["would_discard"] == [
        {"name": "x22", "guid": guid_of_dst(p, "x22")},
        {"name": "x23", "guid": guid_of_dst(p, "x23")},
    ]
    assert details["target_only"] == ["x22", "x23"]
    assert (details["base"], details["source_newest"], details["target_newest"]) == (
        "s21", "s23", "x23")
    assert found["detected_at"] == "2026-11-26T12:00:00Z"
    assert instructions(witness, p.dst)["action_count"] == 0
    got = state(witness, p.group, p.dst)
    assert got["status"] == "conflict" and "x22, x23" in got["reason"]
    assert status(witness, p.group)["conflict_count"] == 1
    assert status(witness, p.group)["open_conflicts"] == 1
    assert witness.client.get(f"{API}/conflicts/{found['id']}").json() == found
    detected = events(witness, "conflict")
    assert [(e["type"], e["data"]["conflict_id"]) for e in detected] == [
        ("conflict.detected", found["id"])]
    assert detected[0]["severity"] == "warning" and detected[0]["system_id"] == p.dst.id
    assert events(witness, "sync.conflict")[-1]["data"]["dataset"] == "data"


def test_rollback_target_resolution(witness: Witness) -> None:
    p = diverged(witness)
    ident = one_conflict(witness)["id"]
    resolved = resolve(witness, ident, "rollback_target", note="the backup host's own work")
    assert resolved.status_code == 200, resolved.text
    body = resolved.json()
    assert (body["status"], body["resolution"], body["note"], body["resolved_by"]) == (
        "resolved", "rollback_target", "the backup host's own work", "admin")
    assert body["resolved_at"] == "2026-11-26T12:00:00Z"
    found = instructions(witness, p.dst, include_commands=True)["actions"]
    assert [(a["action_type"], a["sequence"]) for a in found] == [
        ("rollback", 1), ("incremental_send", 2)]
    rollback, incremental = found
    assert rollback["pipeline"] == [["zfs", "rollback", "-r", "backup/data@s21"]]
    assert rollback["sync_command"] == "zfs rollback -r backup/data@s21"
    assert rollback["snapshot_id"] is None and rollback["snapshot_name"] == "s21"
    assert (incremental["incremental_base"], incremental["snapshot_name"]) == ("s21", "s23")
    assert incremental["rollback_to_base"] is True
    assert incremental["pipeline"][0] == ["zfs", "rollback", "backup/data@s21"]  # no -r
    logged = events(witness, "conflict.resolved")
    assert len(logged) == 1 and "x22, x23" in logged[0]["message"]
    assert logged[0]["data"]["strategy"] == "rollback_target"
    # Carried out: the target rolled back and received; the conflict steers nothing more.
    p.dst.drop("data", "x22", "x23")
    deliver(p.dst, p.src, "data", incremental)
    p.dst.report()
    assert instructions(witness, p.dst)["action_count"] == 0
    assert state(witness, p.group, p.dst)["status"] == "in_sync"
    after = witness.client.get(f"{API}/conflicts/{ident}").json()
    assert after["status"] == "resolved"
    # A new divergence later is a new decision: the old allowance does not cover it.
    at(witness, NOW + 2 * HOUR, p.src, p.dst)
    p.src.add("data", "s27")
    p.src.report()
    p.dst.add("data", "x26", own=True)
    p.dst.report()
    assert instructions(witness, p.dst)["action_count"] == 0
    again = witness.client.get(f"{API}/conflicts/{ident}").json()
    assert (again["status"], again["resolution"]) == ("open", None)
    assert [d["name"] for d in again["details"]["would_discard"]] == ["x26"]


def test_rollback_resolution_reopens_when_the_target_gains_a_snapshot(witness: Witness) -> None:
    p = diverged(witness)
    ident = one_conflict(witness)["id"]
    resolve(witness, ident, "rollback_target")
    assert instructions(witness, p.dst)["action_count"] == 2
    p.dst.add("data", "x24", own=True)  # not in what the admin agreed to discard
    p.dst.report()
    assert instructions(witness, p.dst)["action_count"] == 0
    reopened = witness.client.get(f"{API}/conflicts/{ident}").json()
    assert (reopened["status"], reopened["resolution"], reopened["resolved_by"]) == (
        "open", None, None)
    assert [d["name"] for d in reopened["details"]["would_discard"]] == ["x22", "x23", "x24"]
    got = state(witness, p.group, p.dst)
    assert got["status"] == "conflict"
    assert [e["type"] for e in events(witness, "conflict")] == [
        "conflict.detected", "conflict.resolved", "conflict.reopened"]
    # A fresh decision covers the new list.
    resolve(witness, ident, "rollback_target")
    assert kinds(instructions(witness, p.dst)["actions"])[0] == ("rollback", 1, "s21")


def test_allow_rollback_group_needs_no_resolution(witness: Witness) -> None:
    p = diverged(witness, allow_rollback=True)
    found = instructions(witness, p.dst)["actions"]
    assert [a["action_type"] for a in found] == ["rollback", "incremental_send"]
    assert "allow_rollback" in state(witness, p.group, p.dst)["reason"]
    listed = one_conflict(witness)
    assert listed["details"]["would_discard"][0]["name"] == "x22"


def test_ignore_and_manual_plan_nothing(witness: Witness) -> None:
    p = diverged(witness)
    ident = one_conflict(witness)["id"]
    ignored = resolve(witness, ident, "ignore")
    assert (ignored.json()["status"], ignored.json()["resolution"]) == ("ignored", "ignore")
    assert instructions(witness, p.dst)["action_count"] == 0
    assert state(witness, p.group, p.dst)["status"] == "conflict"
    assert conflicts(witness, status="ignored")[0]["id"] == ident
    assert conflicts(witness, status="open") == []
    manual = resolve(witness, ident, "manual", note="fixing by hand")
    assert (manual.json()["status"], manual.json()["resolution"]) == ("resolved", "manual")
    assert instructions(witness, p.dst)["action_count"] == 0


def test_rename_aside_resolution_for_no_common_snapshot(witness: Witness) -> None:
    p = no_common(witness)
    found = one_conflict(witness)
    assert found["type"] == "no_common_snapshot"
    assert found["details"]["rename_to"] == "backup/data.zfs-sync-20261126"
    assert found["details"]["target_only"] == ["x10", "x11"]
    assert instructions(witness, p.dst)["action_count"] == 0
    assert state(witness, p.group, p.dst)["status"] == "conflict"
    resolved = resolve(witness, found["id"], "rename_target_aside")
    assert resolved.json()["status"] == "resolved"
    actions = instructions(witness, p.dst, include_commands=True)["actions"]
    assert kinds(actions) == [
        ("rename", 1, None), ("full_send", 2, "s20"), ("incremental_send", 3, "s22")]
    rename = actions[0]
    assert rename["pipeline"] == [
        ["zfs", "rename", "backup/data", "backup/data.zfs-sync-20261126"]]
    assert rename["sync_command"] == "zfs rename backup/data backup/data.zfs-sync-20261126"
    assert actions[1]["pipeline"][-1] == ["zfs", "receive", "-u", "backup/data"]
    # Carried out: the old copy sits beside the new one; nothing was destroyed.
    moved = p.dst.snapshots.pop("data")
    for item in moved:
        item["dataset"] = "backup/data.zfs-sync-20261126"
    p.dst.snapshots["data.zfs-sync-20261126"] = moved
    for action in actions[1:]:
        deliver(p.dst, p.src, "data", action)
    p.dst.report()
    assert instructions(witness, p.dst)["action_count"] == 0
    assert state(witness, p.group, p.dst)["status"] == "in_sync"


def test_rename_aside_also_settles_a_divergence(witness: Witness) -> None:
    p = diverged(witness)
    resolve(witness, one_conflict(witness)["id"], "rename_target_aside")
    assert [a["action_type"] for a in instructions(witness, p.dst)["actions"]] == [
        "rename", "full_send", "incremental_send"]


def test_conflict_clears_when_the_facts_no_longer_show_it(witness: Witness) -> None:
    p = diverged(witness)
    ident = one_conflict(witness)["id"]
    p.dst.drop("data", "x22", "x23")  # an admin destroyed them by hand
    p.dst.report()
    cleared = witness.client.get(f"{API}/conflicts/{ident}").json()
    assert cleared["status"] == "cleared"
    assert [e["type"] for e in events(witness, "conflict")] == [
        "conflict.detected", "conflict.cleared"]
    assert kinds(instructions(witness, p.dst)["actions"]) == [("incremental_send", 1, "s23")]
    # Seen again later: the same id, open again, detected anew.
    at(witness, NOW + HOUR, p.src, p.dst)
    p.dst.add("data", "x22", own=True)
    p.dst.report()
    back = witness.client.get(f"{API}/conflicts/{ident}").json()
    assert (back["status"], back["detected_at"]) == ("open", "2026-11-26T13:00:00Z")
    assert [e["type"] for e in events(witness, "conflict")][-1] == "conflict.detected"


def test_resolve_needs_admin(witness: Witness) -> None:
    p = diverged(witness)
    ident = one_conflict(witness)["id"]
    for headers, code in (({}, 401), (p.dst.headers, 403), (p.src.headers, 403)):
        response = resolve(witness, ident, "rollback_target", headers=headers)
        assert response.status_code == code, response.text
        assert "admin token" in response.json()["detail"]
    assert one_conflict(witness)["status"] == "open"
    assert instructions(witness, p.dst)["action_count"] == 0
    assert events(witness, "conflict.resolved") == []


def test_resolve_with_open_admin(make_witness: Any) -> None:
    witness = make_witness(open_admin=True)
    p = diverged(witness)
    response = resolve(witness, one_conflict(witness)["id"], "ignore", headers={})
    assert response.status_code == 200, response.text
    assert response.json()["resolved_by"] == "anonymous (open admin)"
    assert instructions(witness, p.dst)["action_count"] == 0


@pytest.mark.parametrize("body", [
    {"strategy": "destroy_everything"}, {}, {"strategy": "ignore", "colour": "blue"},
    {"strategy": "ignore", "note": "x" * 2001},
])
def test_resolve_rejects_bad_bodies(witness: Witness, body: dict[str, Any]) -> None:
    diverged(witness)
    ident = one_conflict(witness)["id"]
    response = witness.client.post(f"{API}/conflicts/{ident}/resolve", json=body, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert one_conflict(witness)["status"] == "open"


def test_list_filters(witness: Witness) -> None:
    p = diverged(witness)
    third = host(witness, "third", "vault")
    third.add("data", "y01", own=True)
    third.report()
    other = group(witness, p.src, p.src, third, name="g2")
    assert len(conflicts(witness)) == 2
    mine = one_conflict(witness, sync_group_id=other)
    assert (mine["type"], mine["target_system_id"]) == ("no_common_snapshot", third.id)
    resolve(witness, mine["id"], "ignore")
    assert [c["id"] for c in conflicts(witness, status="open")] == [
        conflict_id(p.group, "data", p.dst.id, "target_diverged")]
    assert conflicts(witness, sync_group_id=other, status="open") == []
    page = witness.client.get(f"{API}/conflicts", params={"limit": 1})
    assert len(page.json()) == 1 and page.headers["X-Total-Count"] == "2"
    assert witness.client.get(f"{API}/conflicts", params={"status": "weird"}).status_code == 422


def test_guid_mismatch_is_a_conflict(witness: Witness) -> None:
    p = pair(witness, dst_names=("s20",))
    p.dst.add("data", "s21", own=True)  # same name as the source's s21, another guid
    p.dst.drop("data", "s20")
    p.dst.add("data", "s20")
    p.dst.report()
    found = one_conflict(witness)
    assert found["type"] in ("target_diverged", "guid_mismatch")
    assert instructions(witness, p.dst)["action_count"] == 0
