from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from tests.conftest import ADMIN, Witness
from zfs_sync.storage.models import System

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


def test_register_returns_key_once_and_stores_only_its_hash(witness: Witness) -> None:
    system_id, headers = witness.register("alpha")
    key = headers["X-API-Key"]
    listing = witness.client.get("/api/v1/systems")
    assert key not in listing.text
    assert key not in witness.client.get(f"/api/v1/systems/{system_id}").text
    with witness.db.read() as session:
        row = session.scalars(select(System)).one()
        stored = [str(v) for v in row.__dict__.values()]
    assert all(key not in value for value in stored)
    assert row.api_key_hash and len(row.api_key_hash) == 64


def test_duplicate_hostname_conflicts_unless_admin_replaces(witness: Witness) -> None:
    system_id, old = witness.register("alpha")
    again = witness.client.post("/api/v1/systems", json={"hostname": "alpha"}, headers=ADMIN)
    assert again.status_code == 409
    assert again.json()["code"] == "E_HOSTNAME_EXISTS"
    replaced = witness.client.post(
        "/api/v1/systems?replace=true", json={"hostname": "alpha", "platform": "freebsd"},
        headers=ADMIN,
    )
    assert replaced.status_code == 201
    assert replaced.json()["id"] == system_id
    assert replaced.json()["platform"] == "freebsd"
    new = {"X-API-Key": replaced.json()["api_key"]}
    assert witness.client.post(f"/api/v1/systems/{system_id}/heartbeat", headers=old).status_code == 401
    assert witness.client.post(f"/api/v1/systems/{system_id}/heartbeat", headers=new).status_code == 200


def test_replace_needs_admin_even_with_open_registration(make_witness) -> None:  # type: ignore[no-untyped-def]
    witness = make_witness(open_registration=True)
    assert witness.client.post("/api/v1/systems", json={"hostname": "a"}).status_code == 201
    response = witness.client.post("/api/v1/systems?replace=true", json={"hostname": "a"})
    assert response.status_code == 401


def test_alias_register_route(witness: Witness) -> None:
    response = witness.client.post(
        "/api/v1/systems/register", json={"hostname": "beta", "platform": "linux"}, headers=ADMIN
    )
    assert response.status_code == 201


def test_partial_update(witness: Witness) -> None:
    system_id, headers = witness.register("alpha", ssh_hostname="alpha.lan")
    response = witness.client.put(
        f"/api/v1/systems/{system_id}", json={"ssh_user": "zfs", "ssh_port": 2222}, headers=headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["ssh_hostname"], body["ssh_user"], body["ssh_port"]) == ("alpha.lan", "zfs", 2222)
    bad = witness.client.put(f"/api/v1/systems/{system_id}", json={"hostname": None}, headers=headers)
    assert bad.status_code == 422


def test_health_boundaries_over_http(witness: Witness) -> None:
    system_id, headers = witness.register("alpha")
    assert witness.client.get(f"/api/v1/systems/{system_id}/health").json()["status"] == "unknown"
    witness.clock.now = NOW
    witness.client.post(f"/api/v1/systems/{system_id}/heartbeat", headers=headers)
    for offset, status in ((299, "online"), (300, "online"), (301, "offline")):
        witness.clock.now = NOW + timedelta(seconds=offset)
        body = witness.client.get(f"/api/v1/systems/{system_id}/health").json()
        assert (body["status"], body["heartbeat_age_seconds"]) == (status, offset)
    witness.clock.now = NOW + timedelta(seconds=301)
    offline = witness.client.get("/api/v1/systems/health/offline").json()
    assert offline["count"] == 1 and offline["systems"][0]["system_id"] == system_id
    assert witness.client.get("/api/v1/systems/health/online").json()["count"] == 0


def test_per_system_timeout_and_agent_interval(witness: Witness) -> None:
    system_id, headers = witness.register("alpha", heartbeat_timeout_seconds=60)
    witness.clock.now = NOW
    witness.client.post(
        f"/api/v1/systems/{system_id}/heartbeat", json={"interval_seconds": 900}, headers=headers
    )
    health = witness.client.get(f"/api/v1/systems/{system_id}/health").json()
    assert health["heartbeat_timeout_seconds"] == 60  # the admin's override wins
    other_id, other = witness.register("beta")
    witness.client.post(
        f"/api/v1/systems/{other_id}/heartbeat", json={"interval_seconds": 900}, headers=other
    )
    assert witness.client.get(f"/api/v1/systems/{other_id}/health").json()[
        "heartbeat_timeout_seconds"
    ] == 1800


def test_heartbeat_after_offline_writes_online_event(witness: Witness) -> None:
    system_id, headers = witness.register("alpha")
    witness.clock.now = NOW
    witness.client.post(f"/api/v1/systems/{system_id}/heartbeat", headers=headers)
    witness.clock.now = NOW + timedelta(seconds=100)
    witness.client.post(f"/api/v1/systems/{system_id}/heartbeat", headers=headers)
    witness.clock.now = NOW + timedelta(seconds=1000)
    witness.client.post(f"/api/v1/systems/{system_id}/heartbeat", headers=headers)
    events = witness.client.get("/api/v1/events?type=system.online").json()
    assert [e["data"]["previous"] for e in events] == ["offline", "unknown"]


def test_rotate_and_revoke(witness: Witness) -> None:
    system_id, headers = witness.register("alpha")
    rotated = witness.client.post(f"/api/v1/systems/{system_id}/api-key/rotate", headers=headers)
    assert rotated.status_code == 200
    new = {"X-API-Key": rotated.json()["api_key"]}
    assert witness.client.post(f"/api/v1/systems/{system_id}/heartbeat", headers=headers).status_code == 401
    assert witness.client.delete(f"/api/v1/systems/{system_id}/api-key", headers=new).status_code == 204
    assert witness.client.post(f"/api/v1/systems/{system_id}/heartbeat", headers=new).status_code == 401
    again = witness.client.post(f"/api/v1/systems/{system_id}/api-key/rotate", headers=ADMIN)
    assert again.status_code == 200
    types = [e["type"] for e in witness.client.get("/api/v1/events").json()]
    assert types.count("system.key_rotated") == 2 and "system.key_revoked" in types


def test_bearer_header_and_conflicting_headers(witness: Witness) -> None:
    system_id, headers = witness.register("alpha")
    bearer = {"Authorization": f"Bearer {headers['X-API-Key']}"}
    assert witness.client.post(f"/api/v1/systems/{system_id}/heartbeat", headers=bearer).status_code == 200
    both = {**bearer, "X-API-Key": ADMIN["X-API-Key"]}
    response = witness.client.post(f"/api/v1/systems/{system_id}/heartbeat", headers=both)
    assert response.status_code == 400 and response.json()["code"] == "E_AMBIGUOUS_CREDENTIALS"


def test_unknown_system_is_404(witness: Witness) -> None:
    for path in ("/api/v1/systems/nope", "/api/v1/systems/nope/health"):
        response = witness.client.get(path)
        assert response.status_code == 404 and response.json()["code"] == "E_SYSTEM_NOT_FOUND"


def test_list_pagination(witness: Witness) -> None:
    for i in range(5):
        witness.register(f"host{i}")
    response = witness.client.get("/api/v1/systems?limit=2&offset=1")
    assert response.headers["X-Total-Count"] == "5"
    assert [s["hostname"] for s in response.json()] == ["host1", "host2"]
    assert witness.client.get("/api/v1/systems?limit=1001").status_code == 422


def test_delete_removes_snapshots_datasets_and_memberships(witness: Witness) -> None:
    from sqlalchemy import func

    from zfs_sync.storage.models import Dataset, GroupMember, Snapshot

    a, a_headers = witness.register("alpha")
    b, b_headers = witness.register("beta")
    report = {
        "snapshots": [{"dataset": "tank/data", "name": f"s{i}", "timestamp": 1_700_000_000 + i}
                      for i in range(3)],
        "datasets": [{"name": "tank/data"}, {"name": "tank/empty"}],
    }
    for system_id, headers in ((a, a_headers), (b, b_headers)):
        put = witness.client.put(f"/api/v1/systems/{system_id}/snapshots", json=report, headers=headers)
        assert put.status_code == 200, put.text
    group = witness.client.post(
        "/api/v1/sync-groups", json={"name": "g", "system_ids": [a, b]}, headers=ADMIN
    ).json()
    assert witness.client.delete(f"/api/v1/systems/{a}", headers=ADMIN).status_code == 204
    with witness.db.read() as session:
        def count(model, system_id):  # type: ignore[no-untyped-def]
            return session.scalar(select(func.count()).select_from(model).where(model.system_id == system_id))

        assert [count(m, a) for m in (Snapshot, Dataset, GroupMember)] == [0, 0, 0]
        assert [count(m, b) for m in (Snapshot, Dataset, GroupMember)] == [3, 2, 1]
    assert witness.client.get(f"/api/v1/systems/{a}").status_code == 404
    assert witness.client.get(f"/api/v1/sync-groups/{group['id']}").json()["system_ids"] == [b]
    deleted = witness.client.get("/api/v1/events?type=system.deleted").json()
    assert deleted[0]["system_id"] == a


def test_delete_hub_needs_force_and_names_the_groups(witness: Witness) -> None:
    a, _ = witness.register("alpha")
    b, _ = witness.register("beta")
    for name in ("nightly", "weekly"):
        body = {"name": name, "directional": True, "hub_system_id": a, "system_ids": [a, b]}
        assert witness.client.post("/api/v1/sync-groups", json=body, headers=ADMIN).status_code == 201
    refused = witness.client.delete(f"/api/v1/systems/{a}", headers=ADMIN)
    assert refused.status_code == 409 and refused.json()["code"] == "E_SYSTEM_IS_HUB"
    assert "nightly" in refused.json()["detail"] and "weekly" in refused.json()["detail"]
    assert witness.client.get(f"/api/v1/systems/{a}").status_code == 200
    forced = witness.client.delete(f"/api/v1/systems/{a}?force=true", headers=ADMIN)
    assert forced.status_code == 204
    groups = witness.client.get("/api/v1/sync-groups").json()
    assert [(g["enabled"], g["hub_system_id"]) for g in groups] == [(False, None), (False, None)]
