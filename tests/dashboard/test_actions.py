"""Admin actions: refused without a session or CSRF token, done with both."""

from __future__ import annotations

import re
from typing import Any

from tests.conftest import ADMIN_TOKEN, Witness
from tests.dashboard.test_pages import build
from zfs_sync.dashboard import session as sessions
from zfs_sync.storage import app_settings


def sign_in(witness: Witness) -> str:
    """Sign in; return the CSRF token the pages carry."""
    response = witness.client.post("/login", data={"token": ADMIN_TOKEN}, follow_redirects=False)
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    found = re.search(r'name="csrf" value="([^"]+)"', witness.client.get("/").text)
    assert found
    return found.group(1)


def admin_posts(witness: Witness) -> list[tuple[str, dict[str, Any]]]:
    fleet = build(witness)
    group = fleet.groups["homelab-backups"]
    conflict = witness.client.get("/api/v1/conflicts").json()[0]["id"]
    return [
        ("/groups/new", {"name": "made-here", "system_ids": fleet.ids["laptop"]}),
        (f"/groups/{group}/edit", {
            "name": "renamed", "directional": "on", "hub_system_id": fleet.ids["nas-primary"],
            "system_ids": [fleet.ids[h] for h in ("nas-primary", "backup-east", "backup-west")],
            "datasets": "data\nphotos", "enabled": "on", "sync_interval_seconds": "600"}),
        (f"/groups/{group}/enabled", {"enabled": "false"}),
        (f"/groups/{group}/members", {"system_id": fleet.ids["laptop"]}),
        (f"/groups/{group}/members/{fleet.ids['backup-west']}/remove", {}),
        (f"/groups/{group}/check", {}),
        (f"/conflicts/{conflict}/resolve", {"strategy": "ignore"}),
        (f"/systems/{fleet.ids['laptop']}/rotate-key", {}),
        ("/logout", {}),
    ]


def test_admin_posts_are_refused_without_a_session(witness: Witness) -> None:
    before = witness.client.get("/api/v1/events", params={"limit": 1000}).json()
    for path, form in admin_posts(witness):
        response = witness.client.post(path, data=form, follow_redirects=False)
        assert response.status_code == 403, path
    after = witness.client.get("/api/v1/events", params={"limit": 1000}).json()
    assert [e["type"] for e in after if e["type"].startswith(("group.u", "conflict.res"))] == []
    assert len(after) >= len(before)


def test_admin_posts_are_refused_without_the_csrf_token(witness: Witness) -> None:
    posts = admin_posts(witness)
    sign_in(witness)
    for path, form in posts:
        for token in (None, "wrong"):
            data = dict(form, **({"csrf": token} if token else {}))
            response = witness.client.post(path, data=data, follow_redirects=False)
            assert response.status_code == 403, (path, token)
    groups = witness.client.get("/api/v1/sync-groups").json()
    assert "made-here" not in [g["name"] for g in groups]


def test_forged_or_foreign_cookie_is_no_session(witness: Witness) -> None:
    csrf = sign_in(witness)
    cookie = witness.client.cookies.get(sessions.COOKIE)
    payload, _, sig = cookie.partition(".")
    witness.client.cookies.set(sessions.COOKIE, payload + "." + "0" * len(sig))
    response = witness.client.post("/groups/new", data={"csrf": csrf, "name": "x"})
    assert response.status_code == 403
    assert sessions.decode(b"other", cookie, 0) is None


def fleet_size(group: dict[str, Any]) -> int:
    return len(group["system_ids"])


def test_signed_in_admin_can_do_everything(witness: Witness) -> None:
    posts = dict(admin_posts(witness))
    csrf = sign_in(witness)
    for path, form in posts.items():
        response = witness.client.post(path, data=dict(form, csrf=csrf), follow_redirects=False)
        assert response.status_code in (200, 303), (path, response.text)
        if path.endswith("rotate-key"):
            assert re.search(r'id="new-key">zs_', response.text)
    groups = {g["name"]: g for g in witness.client.get("/api/v1/sync-groups").json()}
    assert "made-here" in groups and "renamed" in groups
    assert groups["renamed"]["enabled"] is False
    assert groups["renamed"]["datasets"] == ["data", "photos"]
    assert groups["renamed"]["sync_interval_seconds"] == 600
    assert fleet_size(groups["renamed"]) == 3  # backup-west removed, laptop added
    conflicts = witness.client.get("/api/v1/conflicts", params={"status": "ignored"}).json()
    assert len(conflicts) == 1
    # Signed out: the cookie is gone and actions are refused again.
    assert witness.client.post("/groups/new", data={"csrf": csrf, "name": "y"}).status_code == 403


def test_rollback_needs_confirmation_and_errors_are_pages(witness: Witness) -> None:
    posts = dict(admin_posts(witness))
    csrf = sign_in(witness)
    resolve = next(p for p in posts if p.endswith("/resolve"))
    page = witness.client.get(resolve.removesuffix("/resolve")).text
    assert "local-edit-1" in page and "local-edit-2" in page  # what a rollback would discard
    response = witness.client.post(resolve, data={"csrf": csrf, "strategy": "rollback_target"})
    assert response.status_code == 422 and "confirm" in response.text
    response = witness.client.post("/groups/new", data={"csrf": csrf, "name": ""})
    assert response.status_code == 422
    response = witness.client.post("/groups/nope/check", data={"csrf": csrf})
    assert response.status_code == 404
    ok = witness.client.post(resolve, data={"csrf": csrf, "strategy": "rollback_target",
                                            "confirm": "on"}, follow_redirects=False)
    assert ok.status_code == 303


def test_session_secret_is_stored_once(witness: Witness, make_witness: Any) -> None:
    sign_in(witness)
    with witness.db.read() as session:
        stored = app_settings.get_value(session, app_settings.SESSION_SECRET)
    assert stored
    other = make_witness()
    other.client.cookies.set(sessions.COOKIE, witness.client.cookies.get(sessions.COOKIE))
    assert 'name="csrf"' in other.client.get("/").text  # a replica accepts the cookie


def test_configured_session_secret_is_used(make_witness: Any) -> None:
    witness = make_witness(session_secret="s" * 40)
    sign_in(witness)
    cookie = witness.client.cookies.get(sessions.COOKIE)
    assert sessions.decode(b"s" * 40, cookie, 0) is not None


def test_wrong_token_does_not_sign_in(witness: Witness) -> None:
    response = witness.client.post("/login", data={"token": "nope"}, follow_redirects=False)
    assert response.status_code == 401
    assert sessions.COOKIE not in response.headers.get("set-cookie", "")
    assert witness.client.post("/login", data={}, follow_redirects=False).status_code == 401


def test_non_ascii_cookie_or_csrf_is_refused_not_a_crash(witness: Witness) -> None:
    sign_in(witness)
    cookie = witness.client.cookies.get(sessions.COOKIE)
    payload, _, sig = cookie.partition(".")
    # A non-ASCII CSRF value with a valid session: refused (compare_digest on str would raise).
    response = witness.client.post("/groups/new", data={"csrf": "é" * 8, "name": "x"},
                                   follow_redirects=False)
    assert response.status_code == 403
    assert sessions.decode(b"secret", payload + ".é" + sig[1:], 0) is None
    assert sessions.decode(b"secret", "é." + sig, 0) is None
    assert not sessions.csrf_ok(sessions.DashboardSession("abc", 0), "\ud800")
    assert "made-here" not in [g["name"] for g in witness.client.get("/api/v1/sync-groups").json()]
