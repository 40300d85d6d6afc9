"""Dashboard pages over plain HTTP: rendering, escaping, unknown ids, read access."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import ADMIN, ADMIN_TOKEN, Witness
from zfs_sync.dashboard import demo
from zfs_sync.dashboard.render import ago


def build(witness: Witness) -> demo.Fleet:
    def set_now(moment: Any) -> None:
        witness.clock.now = moment

    return demo.build_demo(witness.client, ADMIN, set_now)


def dot_of(html: str, hostname: str) -> str:
    """The health status of a hostname's row on /systems."""
    row = next(r for r in html.split("<tr ") if f">{hostname}</a>" in r)
    found = re.search(r'data-status="(\w+)"', row)
    assert found, row
    return found.group(1)


def test_every_page_renders_the_demo_fleet(witness: Witness) -> None:
    fleet = build(witness)
    conflict_id = witness.client.get("/api/v1/conflicts").json()[0]["id"]
    paths = ["/", "/systems", "/groups", "/conflicts", "/conflicts?status=", "/activity",
             "/activity?type=system", "/login", f"/systems/{fleet.ids['nas-primary']}",
             f"/groups/{fleet.groups['homelab-backups']}", f"/conflicts/{conflict_id}"]
    for path in paths:
        response = witness.client.get(path)
        assert response.status_code == 200, (path, response.text)
        assert response.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        assert " on" + "click=" not in response.text.lower()  # no inline handlers (CSP)


def test_systems_page_shows_health_and_counts(witness: Witness) -> None:
    build(witness)
    html = witness.client.get("/systems").text
    assert dot_of(html, "nas-primary") == "online"
    assert dot_of(html, "offsite-vault") == "offline"
    assert dot_of(html, "new-host") == "unknown"
    assert "40 s ago" in html and "2 h ago" in html and "never" in html
    assert "1.4.2" in html


def test_overview_counts(witness: Witness) -> None:
    build(witness)
    html = witness.client.get("/").text
    numbers = dict((label.strip(), int(n)) for n, label in re.findall(
        r'<span class="n \w+">(\d+)</span>\s*([a-z ]+)</a>', html))
    assert numbers["systems online"] == 4
    assert numbers["offline"] == 1 and numbers["never seen"] == 1
    assert numbers["in conflict"] == 1 and numbers["open conflicts"] == 1
    assert numbers["out of sync"] == 1 and numbers["groups in sync"] == 1


def test_group_matrix_shows_lagging_host(witness: Witness) -> None:
    fleet = build(witness)
    html = witness.client.get(f"/groups/{fleet.groups['homelab-backups']}").text
    cell = re.search(r'data-host="backup-west" data-status="(\w+)".*?</td>', html, re.S)
    assert cell and cell.group(1) == "out_of_sync"
    assert "lag 7 h" in cell.group(0)
    assert 'data-host="backup-east" data-status="in_sync"' in html
    assert "<svg class=\"topology\"" in html and "Pending actions" in html


def test_ages_read_like_people_speak() -> None:
    assert [ago(None), ago(5), ago(120), ago(7200), ago(200000)] == [
        "never", "5 s ago", "2 min ago", "2 h ago", "2 d ago"]


@pytest.mark.parametrize("path", ["/systems/unknown", "/groups/unknown", "/conflicts/unknown",
                                  "/systems/%3Cscript%3Ealert(1)",
                                  "/conflicts/%22%3E%3Cimg%20src=x%3E",
                                  "/groups/" + "x" * 300])
def test_unknown_ids_are_404_pages_with_escaped_ids(witness: Witness, path: str) -> None:
    response = witness.client.get(path)
    assert response.status_code == 404
    assert "<script>alert" not in response.text
    assert "<img src=x" not in response.text
    assert "Not found" in response.text


def test_a_slash_in_an_id_is_the_api_json_404(witness: Witness) -> None:
    response = witness.client.get("/systems/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")


def test_hostile_values_are_escaped(witness: Witness) -> None:
    long_name = "h" * 250 + "-end1"
    system_id, headers = witness.register(long_name)
    witness.client.post(f"/api/v1/systems/{system_id}/heartbeat", headers=headers,
                        json={"agent_version": "<i>x</i>"})
    body = {"name": "evil <script>", "description": "<img src=x onerror=alert(1)>",
            "system_ids": [system_id]}
    group = witness.client.post("/api/v1/sync-groups", json=body, headers=ADMIN).json()
    for path in ["/", "/systems", f"/systems/{system_id}", "/groups", f"/groups/{group['id']}",
                 "/activity"]:
        html = witness.client.get(path).text
        assert "<img src=x" not in html and "evil <script>" not in html, path
        assert "<i>x</i>" not in html
    assert long_name in witness.client.get("/systems").text
    assert "&lt;img src=x onerror=alert(1)&gt;" in witness.client.get("/groups").text


def test_activity_filters(witness: Witness) -> None:
    fleet = build(witness)
    html = witness.client.get("/activity", params={"type": "group"}).text
    assert "group.created" in html and "system.registered" not in html
    html = witness.client.get("/activity", params={"system_id": fleet.ids["laptop"]}).text
    assert "laptop" in html and "offsite-vault" not in html.split("<tbody>")[1]


def test_public_reads_off_needs_sign_in(make_witness: Any) -> None:
    witness = make_witness(public_read=False)
    assert witness.client.get("/").status_code == 401
    assert witness.client.get("/systems").status_code == 401
    assert witness.client.get("/", headers=ADMIN).status_code == 200
    login = witness.client.post("/login", data={"token": ADMIN_TOKEN}, follow_redirects=False)
    assert login.status_code == 303
    assert witness.client.get("/systems").status_code == 200


def test_group_page_shows_what_the_status_api_returns(witness: Witness) -> None:
    fleet = build(witness)
    for group_id in fleet.groups.values():
        api = witness.client.get(f"/api/v1/sync/groups/{group_id}/status").json()
        html = witness.client.get(f"/groups/{group_id}").text
        cells = re.findall(r'data-host="([^"]+)" data-status="(\w+)"', html)
        expected = [(s["hostname"], s["status"]) for d in api["datasets"]
                    for s in sorted(d["systems"], key=lambda s: s["hostname"])]
        assert cells == expected
        for dataset in api["datasets"]:
            for system in dataset["systems"]:
                if system["latest_snapshot"]:
                    assert system["latest_snapshot"] in html
