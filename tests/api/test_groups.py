from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import ADMIN, Witness
from zfs_sync.storage import groups as store

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
GROUPS = "/api/v1/sync-groups"


def create(witness: Witness, headers: dict[str, str] | None = ADMIN, **body: Any) -> Any:
    response = witness.client.post(GROUPS, json={"name": "g", **body}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def events(witness: Witness, type_: str = "group") -> list[dict[str, Any]]:
    """Events of a type (prefix), oldest first."""
    return list(reversed(witness.client.get(f"/api/v1/events?type={type_}").json()))


def three(witness: Witness) -> tuple[str, str, str]:
    a, _ = witness.register("alpha")
    b, _ = witness.register("beta")
    c, _ = witness.register("gamma")
    return a, b, c


# -- create and read ------------------------------------------------------------------------


def test_create_with_defaults_and_get_carries_every_field(witness: Witness) -> None:
    a, b, _ = three(witness)
    witness.clock.now = NOW
    created = create(witness, name="homelab", system_ids=[b, a])
    assert created == {
        "id": created["id"],
        "name": "homelab",
        "description": "",
        "enabled": True,
        "sync_interval_seconds": 3600,
        "directional": False,
        "hub_system_id": None,
        "system_ids": [a, b],  # ordered by hostname, like members
        "members": [
            {"system_id": a, "hostname": "alpha", "root": None},
            {"system_id": b, "hostname": "beta", "root": None},
        ],
        "datasets": [],
        "snapshot_pattern": "",
        "allow_rollback": False,
        "created_at": "2026-11-26T12:00:00Z",
        "updated_at": "2026-11-26T12:00:00Z",
    }
    assert witness.client.get(f"{GROUPS}/{created['id']}").json() == created
    assert witness.client.get(GROUPS).json() == [created]


def test_create_with_every_field_and_member_roots(witness: Witness) -> None:
    a, b, _ = three(witness)
    created = create(
        witness,
        name="Backups to the NAS (daily)",
        description="vm images\nand home",
        enabled=False,
        sync_interval_seconds=86400,
        directional=True,
        hub_system_id=a,
        members=[{"system_id": a, "root": "tank"}, {"system_id": b, "root": "backup/host A"}],
        datasets=["data/*", "home", "vm?"],
        snapshot_pattern="autosnap_*_daily",
        allow_rollback=True,
    )
    got = witness.client.get(f"{GROUPS}/{created['id']}").json()
    assert got["members"] == [
        {"system_id": a, "hostname": "alpha", "root": "tank"},
        {"system_id": b, "hostname": "beta", "root": "backup/host A"},
    ]
    assert (got["name"], got["description"], got["enabled"]) == (
        "Backups to the NAS (daily)", "vm images\nand home", False)
    assert (got["directional"], got["hub_system_id"], got["allow_rollback"]) == (True, a, True)
    assert (got["datasets"], got["snapshot_pattern"]) == (["data/*", "home", "vm?"],
                                                          "autosnap_*_daily")
    assert got["sync_interval_seconds"] == 86400


def test_a_group_may_start_without_members(witness: Witness) -> None:
    created = create(witness, name="empty")
    assert (created["system_ids"], created["members"]) == ([], [])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "two\nlines"}, "name"),
        ({"name": " padded"}, "name"),
        ({"sync_interval_seconds": 59}, "sync_interval_seconds"),
        ({"sync_interval_seconds": 31 * 86400 + 1}, "sync_interval_seconds"),
        ({"datasets": ["data/$(reboot)"]}, "datasets"),
        ({"datasets": ["data//vm"]}, "datasets"),
        ({"snapshot_pattern": "daily;rm"}, "snapshot_pattern"),
        ({"snapshot_pattern": "tank@x"}, "snapshot_pattern"),
        ({"members": [{"system_id": "S", "root": "backup/a`id`"}]}, "members"),
        ({"members": [{"system_id": "S", "root": "/backup"}]}, "members"),
        ({"members": [{"system_id": "S", "bogus": 1}]}, "members"),
        ({"system_ids": ["S", "S"]}, "system_ids"),
        ({"members": [{"system_id": "S"}, {"system_id": "S", "root": "tank"}]}, "members"),
        ({"system_ids": ["S"], "members": [{"system_id": "S"}]}, "body"),
        ({"enabled": None}, "enabled"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_create_is_422_naming_the_field_and_writes_nothing(
    witness: Witness, body: dict[str, Any], field: str
) -> None:
    system_id, _ = witness.register("alpha")
    body = json.loads(json.dumps(body).replace('"S"', json.dumps(system_id)))
    response = witness.client.post(GROUPS, json={"name": "g", **body}, headers=ADMIN)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["code"] == "E_VALIDATION" and error["hint"]
    assert field in error["detail"]
    assert witness.client.get(GROUPS).json() == []
    assert events(witness) == []


def test_interval_and_pattern_edges_are_accepted(witness: Witness) -> None:
    assert create(witness, name="min", sync_interval_seconds=60)["sync_interval_seconds"] == 60
    longest = create(witness, name="max", sync_interval_seconds=31 * 86400, snapshot_pattern=None,
                     datasets=None, description=None)
    assert (longest["snapshot_pattern"], longest["datasets"], longest["description"]) == ("", [], "")


def test_duplicate_name_is_409(witness: Witness) -> None:
    first = create(witness, name="homelab")
    response = witness.client.post(GROUPS, json={"name": "homelab"}, headers=ADMIN)
    assert response.status_code == 409
    assert response.json()["code"] == "E_GROUP_EXISTS"
    assert first["id"] in response.json()["detail"]
    assert len(witness.client.get(GROUPS).json()) == 1


# -- directional groups ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"directional": True, "system_ids": ["A", "B"]}, 422, "E_HUB_REQUIRED"),
        ({"directional": False, "hub_system_id": "A", "system_ids": ["A", "B"]}, 422,
         "E_HUB_NOT_DIRECTIONAL"),
        ({"hub_system_id": "A", "system_ids": ["A", "B"]}, 422, "E_HUB_NOT_DIRECTIONAL"),
        ({"directional": True, "hub_system_id": "C", "system_ids": ["A", "B"]}, 422,
         "E_HUB_NOT_MEMBER"),
        ({"directional": True, "hub_system_id": "A", "system_ids": ["B"]}, 422,
         "E_HUB_NOT_MEMBER"),
        ({"directional": True, "hub_system_id": "nope", "system_ids": ["A", "B"]}, 404,
         "E_SYSTEM_NOT_FOUND"),
        ({"system_ids": ["A", "nope"]}, 404, "E_SYSTEM_NOT_FOUND"),
        ({"members": [{"system_id": "nope", "root": "tank"}]}, 404, "E_SYSTEM_NOT_FOUND"),
    ],
)
def test_directional_hub_rules_on_create(
    witness: Witness, body: dict[str, Any], status: int, code: str
) -> None:
    ids = dict(zip("ABC", three(witness), strict=True))
    text = json.dumps(body)
    for letter, system_id in ids.items():
        text = text.replace(f'"{letter}"', json.dumps(system_id))
    response = witness.client.post(GROUPS, json={"name": "g", **json.loads(text)}, headers=ADMIN)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["code"] == code and error["hint"]
    if status == 404:
        assert "'nope'" in error["detail"]
    else:
        assert error["errors"][0]["loc"] == ["body", "hub_system_id"]
    assert witness.client.get(GROUPS).json() == []


def test_directional_group_with_its_hub_among_the_members(witness: Witness) -> None:
    a, b, _ = three(witness)
    created = create(witness, directional=True, hub_system_id=b, system_ids=[a, b])
    assert (created["directional"], created["hub_system_id"]) == (True, b)


# -- update ---------------------------------------------------------------------------------


def test_partial_update_changes_only_what_is_sent(witness: Witness) -> None:
    a, b, _ = three(witness)
    witness.clock.now = NOW
    created = create(witness, description="keep me", members=[{"system_id": a, "root": "tank"},
                                                                {"system_id": b}])
    witness.clock.now = NOW + timedelta(minutes=5)
    response = witness.client.put(
        f"{GROUPS}/{created['id']}", json={"sync_interval_seconds": 1800}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        **created, "sync_interval_seconds": 1800, "updated_at": "2026-11-26T12:05:00Z"
    }
    assert witness.client.get(f"{GROUPS}/{created['id']}").json() == response.json()


def test_update_every_field(witness: Witness) -> None:
    a, b, c = three(witness)
    group = create(witness, system_ids=[a, b])
    body = {
        "name": "renamed", "description": "d", "enabled": False, "sync_interval_seconds": 600,
        "directional": True, "hub_system_id": c, "system_ids": [c, a], "datasets": ["vm/*"],
        "snapshot_pattern": "hourly-*", "allow_rollback": True,
    }
    response = witness.client.put(f"{GROUPS}/{group['id']}", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    got = response.json()
    assert {k: got[k] for k in body} == {**body, "system_ids": [a, c]}
    assert events(witness, "group.updated")[-1]["data"]["fields"] == [
        "name", "description", "enabled", "sync_interval_seconds", "directional",
        "hub_system_id", "datasets", "snapshot_pattern", "allow_rollback", "members",
    ]


def test_update_nulls(witness: Witness) -> None:
    group = create(witness, description="d", datasets=["a"], snapshot_pattern="x*")
    cleared = witness.client.put(
        f"{GROUPS}/{group['id']}",
        json={"description": None, "datasets": None, "snapshot_pattern": None},
        headers=ADMIN,
    ).json()
    assert (cleared["description"], cleared["datasets"], cleared["snapshot_pattern"]) == ("", [], "")
    for field in ("name", "enabled", "sync_interval_seconds", "directional", "allow_rollback",
                  "system_ids", "members"):
        response = witness.client.put(f"{GROUPS}/{group['id']}", json={field: None},
                                      headers=ADMIN)
        assert response.status_code == 422, field
        assert response.json()["errors"][0]["loc"] == ["body", field]


def test_rename_to_an_existing_name_is_409_and_to_its_own_name_is_fine(witness: Witness) -> None:
    create(witness, name="one")
    two = create(witness, name="two")
    clash = witness.client.put(f"{GROUPS}/{two['id']}", json={"name": "one"}, headers=ADMIN)
    assert clash.status_code == 409 and clash.json()["code"] == "E_GROUP_EXISTS"
    same = witness.client.put(f"{GROUPS}/{two['id']}", json={"name": "two"}, headers=ADMIN)
    assert same.status_code == 200


def test_failing_put_changes_nothing(witness: Witness) -> None:
    a, b, c = three(witness)
    other = create(witness, name="other")
    hubbed = create(witness, name="hubbed", directional=True, hub_system_id=a,
                    members=[{"system_id": a, "root": "tank"}, {"system_id": b}])
    flat = create(witness, name="flat", system_ids=[a, b])
    failing: list[tuple[dict[str, Any], dict[str, Any], int, str]] = [
        # every body also carries valid changes, which must not be applied either
        (flat, {"directional": True, "description": "x"}, 422, "E_HUB_REQUIRED"),
        (flat, {"hub_system_id": a, "enabled": False}, 422, "E_HUB_NOT_DIRECTIONAL"),
        (flat, {"directional": True, "hub_system_id": c, "name": "new"}, 422,
         "E_HUB_NOT_MEMBER"),
        (flat, {"system_ids": [a, "nope"], "sync_interval_seconds": 60}, 404,
         "E_SYSTEM_NOT_FOUND"),
        (flat, {"name": other["name"], "system_ids": [a, b, c]}, 409, "E_GROUP_EXISTS"),
        (flat, {"system_ids": [a], "sync_interval_seconds": 10}, 422, "E_VALIDATION"),
        (flat, {"system_ids": [a], "members": [{"system_id": a}]}, 422, "E_VALIDATION"),
        (hubbed, {"system_ids": [b], "description": "x"}, 422, "E_HUB_NOT_MEMBER"),
        (hubbed, {"members": [{"system_id": b, "root": "tank"}]}, 422, "E_HUB_NOT_MEMBER"),
        (hubbed, {"hub_system_id": None, "allow_rollback": True}, 422, "E_HUB_REQUIRED"),
        (hubbed, {"hub_system_id": c, "system_ids": [b, c, "nope"]}, 404, "E_SYSTEM_NOT_FOUND"),
        (hubbed, {"directional": False, "hub_system_id": a}, 422, "E_HUB_NOT_DIRECTIONAL"),
    ]
    before = {g["id"]: g for g in witness.client.get(GROUPS).json()}
    events_before = witness.client.get("/api/v1/events").json()
    witness.clock.now = NOW + timedelta(days=1)
    for group, body, status, code in failing:
        response = witness.client.put(f"{GROUPS}/{group['id']}", json=body, headers=ADMIN)
        assert (response.status_code, response.json()["code"]) == (status, code), body
        assert response.json()["hint"]
    assert {g["id"]: g for g in witness.client.get(GROUPS).json()} == before
    assert witness.client.get("/api/v1/events").json() == events_before


def test_removing_the_hub_via_system_ids_says_what_to_do(witness: Witness) -> None:
    a, b, _ = three(witness)
    group = create(witness, directional=True, hub_system_id=a, system_ids=[a, b])
    response = witness.client.put(
        f"{GROUPS}/{group['id']}", json={"system_ids": [b]}, headers=ADMIN
    )
    assert response.status_code == 422
    error = response.json()
    assert a in error["detail"] and "hub_system_id" in error["hint"]
    # the same removal is fine together with a new hub
    moved = witness.client.put(
        f"{GROUPS}/{group['id']}", json={"system_ids": [b], "hub_system_id": b}, headers=ADMIN
    )
    assert moved.status_code == 200
    assert (moved.json()["system_ids"], moved.json()["hub_system_id"]) == ([b], b)


def test_directional_false_clears_the_hub_and_true_needs_one(witness: Witness) -> None:
    a, b, _ = three(witness)
    group = create(witness, directional=True, hub_system_id=a, system_ids=[a, b])
    url = f"{GROUPS}/{group['id']}"
    flat = witness.client.put(url, json={"directional": False}, headers=ADMIN).json()
    assert (flat["directional"], flat["hub_system_id"]) == (False, None)
    again = witness.client.put(url, json={"directional": True}, headers=ADMIN)
    assert again.status_code == 422 and again.json()["code"] == "E_HUB_REQUIRED"
    hub = witness.client.put(url, json={"directional": True, "hub_system_id": b}, headers=ADMIN)
    assert (hub.json()["directional"], hub.json()["hub_system_id"]) == (True, b)
    switched = witness.client.put(url, json={"hub_system_id": a}, headers=ADMIN)
    assert switched.json()["hub_system_id"] == a


def test_system_ids_keep_roots_and_members_set_them(witness: Witness) -> None:
    a, b, c = three(witness)
    group = create(witness, members=[{"system_id": a, "root": "tank"},
                                     {"system_id": b, "root": "backup/alpha"}])
    url = f"{GROUPS}/{group['id']}"
    kept = witness.client.put(url, json={"system_ids": [a, b, c]}, headers=ADMIN).json()
    assert [m["root"] for m in kept["members"]] == ["tank", "backup/alpha", None]
    reset = witness.client.put(
        url, json={"members": [{"system_id": a}, {"system_id": c, "root": "pool2/sync"}]},
        headers=ADMIN,
    ).json()
    assert [(m["hostname"], m["root"]) for m in reset["members"]] == [
        ("alpha", None), ("gamma", "pool2/sync")]
    assert [e["type"] for e in events(witness) if "member" in e["type"]] == [
        "group.member_added", "group.member_removed"]


def test_members_from_a_get_can_be_sent_back_with_a_new_root(witness: Witness) -> None:
    a, b, _ = three(witness)
    group = create(witness, system_ids=[a, b])
    members = witness.client.get(f"{GROUPS}/{group['id']}").json()["members"]
    members[1]["root"] = "backup/alpha"
    response = witness.client.put(f"{GROUPS}/{group['id']}", json={"members": members},
                                  headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json()["members"] == [
        {"system_id": a, "hostname": "alpha", "root": None},
        {"system_id": b, "hostname": "beta", "root": "backup/alpha"},
    ]


def test_an_empty_put_changes_nothing_and_writes_no_event(witness: Witness) -> None:
    witness.clock.now = NOW
    group = create(witness)
    witness.clock.now = NOW + timedelta(hours=1)
    same = witness.client.put(f"{GROUPS}/{group['id']}", json={}, headers=ADMIN)
    assert same.status_code == 200 and same.json() == group
    unchanged = witness.client.put(f"{GROUPS}/{group['id']}", json={"enabled": True},
                                   headers=ADMIN)
    assert unchanged.json() == group
    assert [e["type"] for e in events(witness)] == ["group.created"]


# -- the operations guide, with the same JSON shapes ----------------------------------------


def jq_array(values: list[str]) -> str:
    """What ``jq -r`` prints for an array: indented JSON, pasted into the body by the shell."""
    return json.dumps(values, indent=2)


def guide_put(witness: Witness, group_id: str, system_ids: list[str]) -> Any:
    # -d "{\n    \"system_ids\": $NEW_SYSTEM_IDS\n  }" with -H "Content-Type: application/json"
    body = '{\n    "system_ids": ' + jq_array(system_ids) + "\n  }"
    return witness.client.put(
        f"{GROUPS}/{group_id}", content=body, headers={"Content-Type": "application/json"}
    )


def test_guide_flows_with_open_admin_and_no_credential(
    make_witness: Callable[..., Witness],
) -> None:
    witness = make_witness(open_admin=True)
    a, b, new = three(witness)
    response = witness.client.post(GROUPS, json={"name": "homelab", "system_ids": [a, b]})
    assert response.status_code == 201, response.text
    group_id = response.json()["id"]

    # Updating Systems in Sync Groups: add a system
    current = json.loads(witness.client.get(f"{GROUPS}/{group_id}").text)
    added = guide_put(witness, group_id, current["system_ids"] + [new])
    assert added.status_code == 200, added.text
    assert sorted(added.json()["system_ids"]) == sorted([a, b, new])

    # ... and remove one: .system_ids | map(select(. != "system-to-remove-id"))
    current = json.loads(witness.client.get(f"{GROUPS}/{group_id}").text)
    removed = guide_put(witness, group_id, [i for i in current["system_ids"] if i != b])
    assert removed.status_code == 200, removed.text
    assert sorted(removed.json()["system_ids"]) == sorted([a, new])

    # Sync Interval Optimization
    body = '{\n    "sync_interval_seconds": 1800\n  }'
    interval = witness.client.put(
        f"{GROUPS}/{group_id}", content=body, headers={"Content-Type": "application/json"}
    )
    assert interval.status_code == 200 and interval.json()["sync_interval_seconds"] == 1800

    # Removing Decommissioned Systems: every group that lists it, then the system itself
    listing = json.loads(witness.client.get(GROUPS).text)
    assert isinstance(listing, list)
    for group in listing:
        if new in group["system_ids"]:
            ids = [i for i in group["system_ids"] if i != new]
            assert guide_put(witness, group["id"], ids).status_code == 200
    assert witness.client.delete(f"/api/v1/systems/{new}").status_code == 204
    assert witness.client.get(f"{GROUPS}/{group_id}").json()["system_ids"] == [a]

    # membership routes and delete need no credential either
    assert witness.client.post(f"{GROUPS}/{group_id}/systems", json={"system_id": b}).status_code == 201
    assert witness.client.delete(f"{GROUPS}/{group_id}/systems/{b}").status_code == 204
    assert witness.client.delete(f"{GROUPS}/{group_id}").status_code == 204


def test_guide_flows_with_the_admin_token(witness: Witness) -> None:
    a, b, new = three(witness)
    group = create(witness, system_ids=[a, b])
    current = witness.client.get(f"{GROUPS}/{group['id']}").json()
    body = '{\n    "system_ids": ' + jq_array(current["system_ids"] + [new]) + "\n  }"
    headers = {"Content-Type": "application/json", **ADMIN}
    response = witness.client.put(f"{GROUPS}/{group['id']}", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert len(response.json()["system_ids"]) == 3
    assert guide_put(witness, group["id"], [a]).status_code == 401  # no token: secure by default


# -- auth -----------------------------------------------------------------------------------


def test_writes_need_the_admin_token(witness: Witness) -> None:
    a, key = witness.register("alpha")
    b, _ = witness.register("beta")
    group = create(witness, system_ids=[a])
    gid = group["id"]
    writes: list[tuple[str, str, dict[str, Any] | None, int]] = [
        ("POST", GROUPS, {"name": "new", "system_ids": [a]}, 201),
        ("PUT", f"{GROUPS}/{gid}", {"description": "x"}, 200),
        ("POST", f"{GROUPS}/{gid}/systems", {"system_id": b}, 201),
        ("DELETE", f"{GROUPS}/{gid}/systems/{b}", None, 204),
        ("DELETE", f"{GROUPS}/{gid}", None, 204),
    ]
    for method, url, body, ok in writes:
        anonymous = witness.client.request(method, url, json=body)
        assert anonymous.status_code == 401, (method, url)
        assert "admin token" in anonymous.json()["detail"]
        system = witness.client.request(method, url, json=body, headers=key)
        assert system.status_code == 403, (method, url)
        assert system.json()["code"] == "E_ADMIN_REQUIRED"
        assert witness.client.request(method, url, json=body, headers=ADMIN).status_code == ok


def test_reads_are_open_unless_public_read_is_off(make_witness: Callable[..., Witness]) -> None:
    witness = make_witness(public_read=False)
    a, key = witness.register("alpha")
    group = create(witness, system_ids=[a])
    for url in (GROUPS, f"{GROUPS}/{group['id']}"):
        assert witness.client.get(url).status_code == 401
        assert witness.client.get(url, headers=key).status_code == 200
    open_witness = make_witness()
    assert open_witness.client.get(f"{GROUPS}/{group['id']}").status_code == 200


# -- membership routes ----------------------------------------------------------------------


def test_add_and_remove_one_member(witness: Witness) -> None:
    a, b, _ = three(witness)
    witness.clock.now = NOW
    group = create(witness, system_ids=[a])
    url = f"{GROUPS}/{group['id']}/systems"
    witness.clock.now = NOW + timedelta(minutes=1)
    added = witness.client.post(url, json={"system_id": b, "root": "backup/alpha"},
                                headers=ADMIN)
    assert added.status_code == 201, added.text
    assert added.json()["members"][1] == {"system_id": b, "hostname": "beta",
                                          "root": "backup/alpha"}
    assert added.json()["updated_at"] == "2026-11-26T12:01:00Z"
    again = witness.client.post(url, json={"system_id": b}, headers=ADMIN)
    assert again.status_code == 409 and again.json()["code"] == "E_ALREADY_MEMBER"
    assert witness.client.delete(f"{url}/{b}", headers=ADMIN).status_code == 204
    assert witness.client.get(f"{GROUPS}/{group['id']}").json()["system_ids"] == [a]
    gone = witness.client.delete(f"{url}/{b}", headers=ADMIN)
    assert gone.status_code == 404 and gone.json()["code"] == "E_NOT_A_MEMBER"


def test_add_member_validates_its_body(witness: Witness) -> None:
    a, _ = witness.register("alpha")
    group = create(witness)
    url = f"{GROUPS}/{group['id']}/systems"
    for body in ({"system_id": a, "root": "tank/$x"}, {}, {"system_id": a, "extra": 1}):
        assert witness.client.post(url, json=body, headers=ADMIN).status_code == 422
    unknown = witness.client.post(url, json={"system_id": "nope"}, headers=ADMIN)
    assert unknown.status_code == 404 and unknown.json()["code"] == "E_SYSTEM_NOT_FOUND"
    assert witness.client.get(f"{GROUPS}/{group['id']}").json()["members"] == []


def test_the_hub_cannot_be_removed_alone(witness: Witness) -> None:
    a, b, _ = three(witness)
    group = create(witness, directional=True, hub_system_id=a, system_ids=[a, b])
    response = witness.client.delete(f"{GROUPS}/{group['id']}/systems/{a}", headers=ADMIN)
    assert response.status_code == 409
    error = response.json()
    assert error["code"] == "E_MEMBER_IS_HUB" and "hub_system_id" in error["hint"]
    assert witness.client.get(f"{GROUPS}/{group['id']}").json()["system_ids"] == [a, b]
    assert witness.client.delete(f"{GROUPS}/{group['id']}/systems/{b}",
                                 headers=ADMIN).status_code == 204


# -- delete, events, unknown ids, pagination ------------------------------------------------


def test_delete_group_keeps_the_systems(witness: Witness) -> None:
    a, b, _ = three(witness)
    group = create(witness, system_ids=[a, b])
    assert witness.client.delete(f"{GROUPS}/{group['id']}", headers=ADMIN).status_code == 204
    assert witness.client.get(f"{GROUPS}/{group['id']}").status_code == 404
    assert len(witness.client.get("/api/v1/systems").json()) == 3
    # the name is free again, and the systems can join a new group
    create(witness, system_ids=[a, b])


def test_events_are_written_with_the_change(witness: Witness) -> None:
    a, b, c = three(witness)
    group = create(witness, name="homelab", system_ids=[a, b])
    gid = group["id"]
    witness.client.put(f"{GROUPS}/{gid}", json={"enabled": False, "system_ids": [a, c]},
                       headers=ADMIN)
    witness.client.post(f"{GROUPS}/{gid}/systems", json={"system_id": b}, headers=ADMIN)
    witness.client.delete(f"{GROUPS}/{gid}/systems/{a}", headers=ADMIN)
    witness.client.delete(f"{GROUPS}/{gid}", headers=ADMIN)
    got = [(e["type"], e["system_id"], e["sync_group_id"]) for e in events(witness)]
    assert got == [
        ("group.created", None, gid),
        ("group.member_removed", b, gid),
        ("group.member_added", c, gid),
        ("group.updated", None, gid),
        ("group.member_added", b, gid),
        ("group.member_removed", a, gid),
        ("group.deleted", None, gid),
    ]
    logged = events(witness)
    assert logged[0]["data"]["system_ids"] == [a, b]
    assert logged[3]["data"]["fields"] == ["enabled", "members"]
    assert "homelab" in logged[-1]["message"]
    by_system = witness.client.get(f"/api/v1/events?sync_group_id={gid}&system_id={b}").json()
    assert len(by_system) == 2


def test_unknown_group_is_404_everywhere(witness: Witness) -> None:
    a, _ = witness.register("alpha")
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", f"{GROUPS}/nope", None),
        ("PUT", f"{GROUPS}/nope", {"description": "x"}),
        ("PUT", f"{GROUPS}/nope", {"system_ids": [a]}),
        ("DELETE", f"{GROUPS}/nope", None),
        ("POST", f"{GROUPS}/nope/systems", {"system_id": a}),
        ("DELETE", f"{GROUPS}/nope/systems/{a}", None),
    ]
    for method, url, body in calls:
        response = witness.client.request(method, url, json=body, headers=ADMIN)
        assert response.status_code == 404, (method, url)
        error = response.json()
        assert error["code"] == "E_SYNC_GROUP_NOT_FOUND" and "'nope'" in error["detail"]
        assert "/api/v1/sync-groups" in error["hint"]


def test_deleting_a_member_system_leaves_the_group_consistent(witness: Witness) -> None:
    a, b, _ = three(witness)
    group = create(witness, directional=True, hub_system_id=a, system_ids=[a, b])
    assert witness.client.delete(f"/api/v1/systems/{b}", headers=ADMIN).status_code == 204
    got = witness.client.get(f"{GROUPS}/{group['id']}").json()
    assert (got["system_ids"], got["hub_system_id"]) == ([a], a)


def test_a_group_whose_hub_was_force_deleted_must_get_a_new_hub(witness: Witness) -> None:
    a, b, _ = three(witness)
    group = create(witness, directional=True, hub_system_id=a, system_ids=[a, b])
    url = f"{GROUPS}/{group['id']}"
    assert witness.client.delete(f"/api/v1/systems/{a}?force=true", headers=ADMIN).status_code == 204
    stored = witness.client.get(url).json()
    assert (stored["enabled"], stored["hub_system_id"], stored["system_ids"]) == (False, None, [b])
    # validated as a whole: the stored state has no hub, so any change must supply one
    stuck = witness.client.put(url, json={"description": "x"}, headers=ADMIN)
    assert stuck.status_code == 422 and stuck.json()["code"] == "E_HUB_REQUIRED"
    fixed = witness.client.put(url, json={"hub_system_id": b, "enabled": True}, headers=ADMIN)
    assert fixed.status_code == 200, fixed.text
    assert (fixed.json()["hub_system_id"], fixed.json()["enabled"]) == (b, True)


def test_a_race_lost_to_another_writer_is_409_not_500(
    witness: Witness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a member can be deleted between our existence check and our insert;
    skipping the check reproduces what the insert then sees."""
    a, _ = witness.register("alpha")
    group = create(witness, name="g", system_ids=[a])
    monkeypatch.setattr(store, "require_systems", lambda session, ids: {})
    monkeypatch.setattr(store, "_check_name_free", lambda session, name, group_id=None: None)
    attempts: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", GROUPS, {"name": "new", "system_ids": ["gone"]}),
        ("POST", GROUPS, {"name": "g"}),
        ("PUT", f"{GROUPS}/{group['id']}", {"system_ids": [a, "gone"], "description": "x"}),
        ("POST", f"{GROUPS}/{group['id']}/systems", {"system_id": "gone"}),
    ]
    for method, url, body in attempts:
        response = witness.client.request(method, url, json=body, headers=ADMIN)
        assert response.status_code == 409, (url, response.text)
        assert response.json()["code"] == "E_CONCURRENT_CHANGE"
    assert witness.client.get(GROUPS).json() == [group]
    assert [e["type"] for e in events(witness)] == ["group.created"]


def test_list_pagination(witness: Witness) -> None:
    for name in ("e", "c", "a", "d", "b"):
        create(witness, name=name)
    response = witness.client.get(f"{GROUPS}?limit=2&offset=1")
    assert response.headers["X-Total-Count"] == "5"
    assert [g["name"] for g in response.json()] == ["b", "c"]
    assert witness.client.get(f"{GROUPS}?limit=1001").status_code == 422
    assert witness.client.get(f"{GROUPS}?offset=-1").status_code == 422
    assert witness.client.get(f"{GROUPS}?offset=10").json() == []
