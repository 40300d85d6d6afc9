"""Authorization matrix: every route x {no credential, another system's key, own key, admin}.

Every route of the OpenAPI document must appear in ROUTES, so a new route cannot ship
without its authorization being tested. Each case runs on a fresh world (two systems A and B,
a group, a snapshot of A) because some successful calls (deletes, rotations) change it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import ADMIN, ADMIN_TOKEN, Witness
from zfs_sync.storage.sync_states import conflict_id, state_id


@dataclass
class World:
    witness: Witness
    a: str
    b: str
    a_headers: dict[str, str]
    b_headers: dict[str, str]
    group: str
    snapshot: str


def _snap(system_id: str | None = None, name: str = "s2") -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "pool": "tank", "dataset": "tank/data",
                            "timestamp": "2026-11-26T10:00:00Z", "guid": "42"}
    if system_id:
        body["system_id"] = system_id
    return body


Body = Callable[[World], Any]
# level: open | read | own | admin | register | group_admin
ROUTES: dict[str, tuple[str, Body | None]] = {
    "GET /api/v1/health": ("open", None),
    "GET /api/v1/health/live": ("open", None),
    "GET /api/v1/health/ready": ("open", None),
    "POST /api/v1/systems": ("register", lambda w: {"hostname": "gamma", "platform": "linux"}),
    "GET /api/v1/systems": ("read", None),
    "GET /api/v1/systems/health/all": ("read", None),
    "GET /api/v1/systems/health/online": ("read", None),
    "GET /api/v1/systems/health/offline": ("read", None),
    "GET /api/v1/systems/{}": ("read", None),
    "PUT /api/v1/systems/{}": ("own", lambda w: {"ssh_user": "zfs"}),
    "DELETE /api/v1/systems/{}": ("group_admin", None),
    "POST /api/v1/systems/{}/heartbeat": ("own", None),
    "GET /api/v1/systems/{}/health": ("read", None),
    "POST /api/v1/systems/{}/api-key/rotate": ("own", None),
    "DELETE /api/v1/systems/{}/api-key": ("own", None),
    "PUT /api/v1/systems/{}/snapshots": ("own", lambda w: {"snapshots": [_snap()]}),
    "POST /api/v1/snapshots": ("own", lambda w: _snap(w.a)),
    "POST /api/v1/snapshots/batch": ("own", lambda w: {"snapshots": [_snap(w.a)]}),
    "GET /api/v1/snapshots": ("read", None),
    "GET /api/v1/snapshots/{}": ("read", None),
    "DELETE /api/v1/snapshots/{}": ("own", None),
    "GET /api/v1/snapshots/history/{}": ("read", None),
    "GET /api/v1/snapshots/statistics/{}": ("read", None),
    "GET /api/v1/snapshots/differences": ("read", None),
    "GET /api/v1/snapshots/gaps": ("read", None),
    "POST /api/v1/sync-groups": ("group_admin", lambda w: {"name": "g2", "system_ids": [w.a, w.b]}),
    "GET /api/v1/sync-groups": ("read", None),
    "GET /api/v1/sync-groups/{}": ("read", None),
    "PUT /api/v1/sync-groups/{}": ("group_admin", lambda w: {"sync_interval_seconds": 1800}),
    "DELETE /api/v1/sync-groups/{}": ("group_admin", None),
    "POST /api/v1/sync-groups/{}/systems": ("group_admin", None),
    "DELETE /api/v1/sync-groups/{}/systems/{}": ("group_admin", None),
    "GET /api/v1/events": ("read", None),
    "GET /api/v1/events/stream": ("read", None),
    "GET /api/v1/systems/{}/protected-snapshots": ("read", None),
    "GET /api/v1/sync/instructions/{}": ("own", None),
    "POST /api/v1/sync/states": (
        "own", lambda w: {"sync_group_id": w.group, "system_id": w.a, "status": "error",
                          "dataset": "data", "error_message": "ssh: connection refused"}),
    "GET /api/v1/sync/states": ("read", None),
    "GET /api/v1/sync/states/{}": ("read", None),
    "GET /api/v1/sync/groups/{}/status": ("read", None),
    "POST /api/v1/sync/groups/{}/check": ("group_admin", None),
    "GET /api/v1/conflicts": ("read", None),
    "GET /api/v1/conflicts/{}": ("read", None),
    "POST /api/v1/conflicts/{}/resolve": ("group_admin", lambda w: {"strategy": "ignore"}),
}

QUERIES = {
    "GET /api/v1/events/stream": lambda _w: "?max_seconds=0.2",
    "GET /api/v1/snapshots/differences": lambda w: f"?system_id_1={w.a}&system_id_2={w.b}",
    "GET /api/v1/snapshots/gaps": lambda w: "?logical_dataset=data",
}


def _url(route: str, w: World) -> str:
    method, path = route.split(" ", 1)
    if path.startswith(("/api/v1/sync-groups/{}", "/api/v1/sync/groups/{}")):
        path = path.replace("{}", w.group, 1)
        path = path.replace("{}", w.a, 1)
    elif path in ("/api/v1/snapshots/{}",):
        path = path.replace("{}", w.snapshot)
    elif path == "/api/v1/sync/states/{}":
        path = path.replace("{}", state_id(w.group, "data", w.a))
    elif path.startswith("/api/v1/conflicts/{}"):
        path = path.replace("{}", conflict_id(w.group, "data", w.a, "no_common_snapshot"))
    else:
        path = path.replace("{}", w.a)
    return path + QUERIES.get(route, lambda _w: "")(w)


def _body(route: str, w: World) -> Any:
    level, body = ROUTES[route]
    if route == "POST /api/v1/sync-groups/{}/systems":
        return {"system_id": w.c}  # type: ignore[attr-defined]
    return body(w) if body else None


def _world(witness: Witness) -> World:
    a, a_headers = witness.register("alpha")
    b, b_headers = witness.register("beta")
    c, _ = witness.register("gamma-member")
    snap = witness.client.post("/api/v1/snapshots", json=_snap(a, "s1"), headers=a_headers)
    assert snap.status_code == 201, snap.text
    # beta holds a newer, unrelated snapshot: alpha becomes a target with no common snapshot,
    # which gives the world a sync state and a conflict to address.
    newer = {**_snap(b, "s9"), "guid": "99", "timestamp": "2026-11-26T11:00:00Z"}
    assert witness.client.post("/api/v1/snapshots", json=newer, headers=b_headers).status_code == 201
    group = witness.client.post(
        "/api/v1/sync-groups", json={"name": "g1", "system_ids": [a, b]}, headers=ADMIN
    )
    assert group.status_code == 201, group.text
    world = World(witness, a, b, a_headers, b_headers, group.json()["id"], snap.json()["id"])
    world.c = c  # type: ignore[attr-defined]
    return world


CREDENTIALS = ("none", "other", "own", "admin")
EXPECTED = {
    "open": {"none": 2, "other": 2, "own": 2, "admin": 2},
    "read": {"none": 2, "other": 2, "own": 2, "admin": 2},
    "own": {"none": 401, "other": 403, "own": 2, "admin": 2},
    "register": {"none": 401, "other": 403, "own": 403, "admin": 2},
    "group_admin": {"none": 401, "other": 403, "own": 403, "admin": 2},
}


def _headers(w: World, credential: str) -> dict[str, str]:
    return {"none": {}, "other": w.b_headers, "own": w.a_headers, "admin": ADMIN}[credential]


def _normalise(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def test_every_route_is_in_the_matrix(witness: Witness) -> None:
    spec = witness.client.get("/openapi.json").json()
    routes = {f"{m.upper()} {_normalise(p)}" for p, ops in spec["paths"].items() for m in ops}
    assert routes - set(ROUTES) == set(), "add the new routes to ROUTES"
    assert set(ROUTES) - routes == set(), "ROUTES names routes that do not exist"


def _call(w: World, route: str, credential: str) -> Any:
    method = route.split(" ", 1)[0]
    return w.witness.client.request(
        method, _url(route, w), json=_body(route, w), headers=_headers(w, credential)
    )


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_authorization(witness: Witness, route: str, credential: str) -> None:
    w = _world(witness)
    response = _call(w, route, credential)
    expected = EXPECTED[ROUTES[route][0]][credential]
    if expected == 2:
        assert 200 <= response.status_code < 300, (route, credential, response.text)
    else:
        assert response.status_code == expected, (route, credential, response.text)
        body = response.json()
        assert body["code"] and body["detail"] and body["hint"]
        assert ("admin token" in body["detail"]) or ("key" in body["detail"])


@pytest.mark.parametrize(
    "route", sorted(r for r, (level, _) in ROUTES.items() if level == "read")
)
def test_reads_need_a_credential_when_public_read_is_off(make_witness: Any, route: str) -> None:
    w = _world(make_witness(public_read=False))
    assert _call(w, route, "none").status_code == 401
    assert 200 <= _call(w, route, "other").status_code < 300


@pytest.mark.parametrize(
    "route", sorted(r for r, (level, _) in ROUTES.items() if level == "group_admin")
)
def test_open_admin_switch(make_witness: Any, route: str) -> None:
    w = _world(make_witness(open_admin=True))
    response = _call(w, route, "none")
    assert 200 <= response.status_code < 300, response.text


def test_open_registration_switch(make_witness: Any) -> None:
    w = _world(make_witness(open_registration=True))
    assert _call(w, "POST /api/v1/systems", "none").status_code == 201


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_no_response_leaks_a_key(witness: Witness, route: str) -> None:
    """Only registration and rotation ever return an API key."""
    w = _world(witness)
    response = _call(w, route, "admin")
    keys = list(witness.keys.values())
    if route in ("POST /api/v1/systems", "POST /api/v1/systems/{}/api-key/rotate"):
        assert "api_key" in response.json()
        keys_in_body = [k for k in keys if k in response.text]
        assert keys_in_body == []  # the new key only, never an existing one
    else:
        assert "zs_" not in response.text
        assert "api_key" not in response.text


# -- the dashboard ------------------------------------------------------------------------
# Every route outside the API: "page" (a read: open, or any credential / a session when public
# reads are off), "form" (an admin form page: shown to anyone, its POST is what is guarded),
# "login" (open), "admin" (a POST that needs the session cookie AND its CSRF token; an API key
# or the admin token in a header is not a session).
DASHBOARD = {
    "GET /": "page",
    "GET /systems": "page",
    "GET /systems/{}": "page",
    "GET /groups": "page",
    "GET /groups/{}": "page",
    "GET /conflicts": "page",
    "GET /conflicts/{}": "page",
    "GET /activity": "page",
    "GET /login": "login",
    "POST /login": "login",
    "GET /groups/new": "form",
    "GET /groups/{}/edit": "form",
    "POST /logout": "admin",
    "POST /groups/new": "admin",
    "POST /groups/{}/edit": "admin",
    "POST /groups/{}/enabled": "admin",
    "POST /groups/{}/members": "admin",
    "POST /groups/{}/members/{}/remove": "admin",
    "POST /groups/{}/check": "admin",
    "POST /conflicts/{}/resolve": "admin",
    "POST /systems/{}/rotate-key": "admin",
}


def _dashboard_routes() -> set[str]:
    from fastapi.routing import APIRoute

    from zfs_sync.dashboard import actions, routes

    found = set()
    for router in (actions.router, routes.router):
        for route in router.routes:
            assert isinstance(route, APIRoute)
            for method in route.methods - {"HEAD"}:
                found.add(f"{method} {re.sub(r'{[^}]+}', '{}', route.path)}")
    return found


def test_every_dashboard_route_is_in_the_matrix() -> None:
    assert _dashboard_routes() == set(DASHBOARD)


def test_dashboard_admin_posts_need_a_session_not_a_header(witness: Witness) -> None:
    from tests.dashboard.test_actions import admin_posts

    posts = admin_posts(witness)
    covered = {f"POST {re.sub(r'/[0-9a-f-]{36}', '/{}', path)}" for path, _ in posts}
    assert covered == {k for k, v in DASHBOARD.items() if v == "admin"}
    key = witness.client.post("/api/v1/systems", headers=ADMIN,
                              json={"hostname": "keyholder", "platform": "linux"}).json()
    headers = [{}, {"X-API-Key": key["api_key"]}, ADMIN,
               {"Authorization": f"Bearer {ADMIN_TOKEN}"}]
    before = len(witness.client.get("/api/v1/events", params={"limit": 1000}).json())
    for path, form in posts:
        for header in headers:
            response = witness.client.post(path, data=form, headers=header,
                                           follow_redirects=False)
            assert response.status_code == 403, (path, header.keys())
    after = len(witness.client.get("/api/v1/events", params={"limit": 1000}).json())
    assert after == before  # nothing was done


def test_dashboard_pages_when_public_reads_are_off(make_witness: Any) -> None:
    from tests.dashboard.test_pages import build

    witness = make_witness(public_read=False)
    fleet = build(witness)
    system, group = next(iter(fleet.ids.values())), next(iter(fleet.groups.values()))
    conflict = witness.client.get("/api/v1/conflicts", headers=ADMIN).json()[0]["id"]
    ids = {"GET /systems/{}": system, "GET /groups/{}": group, "GET /conflicts/{}": conflict}
    key = witness.client.post(f"/api/v1/systems/{system}/api-key/rotate",
                              headers=ADMIN).json()["api_key"]
    for route, kind in DASHBOARD.items():
        if kind != "page":
            continue
        path = route.split(" ", 1)[1].replace("{}", ids.get(route, ""))
        assert witness.client.get(path).status_code == 401, route
        assert witness.client.get(path, headers={"X-API-Key": "zs_bogus_key"}).status_code == 401
        assert witness.client.get(path, headers={"X-API-Key": key}).status_code == 200, route
        assert witness.client.get(path, headers=ADMIN).status_code == 200, route
    assert witness.client.get("/login").status_code == 200
