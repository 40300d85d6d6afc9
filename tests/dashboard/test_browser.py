"""The dashboard in a real Chromium: health dots, live updates, matrix, admin flows, keyboard."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import ADMIN_TOKEN
from tests.dashboard.conftest import Live

GREEN, RED, GRAY = "rgb(31, 157, 85)", "rgb(214, 69, 69)", "rgb(138, 143, 152)"


def dot_colour(page: Any, hostname: str) -> str:
    row = page.locator("#systems-table tbody tr", has_text=hostname).first
    return str(row.locator(".dot").evaluate("e => getComputedStyle(e).backgroundColor"))


def sign_in(page: Any) -> None:
    page.goto("/login")
    page.fill("input[name=token]", ADMIN_TOKEN)
    page.click("button:has-text('Sign in')")
    page.wait_for_url("**/")
    assert page.locator("button:has-text('Sign out')").count() == 1


def test_health_dots_have_the_right_colours(live: Live, page: Any) -> None:
    page.goto("/systems")
    assert dot_colour(page, "nas-primary") == GREEN
    assert dot_colour(page, "offsite-vault") == RED
    assert dot_colour(page, "new-host") == GRAY


def test_heartbeat_turns_red_dot_green_without_reload(live: Live, page: Any) -> None:
    page.goto("/systems")
    page.locator("#live-state[data-state=live]").wait_for()
    page.evaluate("window.__sameDocument = true")
    assert dot_colour(page, "offsite-vault") == RED
    host = "offsite-vault"
    response = httpx.post(f"{live.url}/api/v1/systems/{live.fleet.ids[host]}/heartbeat",
                          headers=live.fleet.keys[host])
    assert response.status_code == 200
    row = page.locator("#systems-table tbody tr", has_text=host).first
    row.locator(".dot[data-status=online]").wait_for(timeout=10000)
    assert dot_colour(page, host) == GREEN
    assert page.evaluate("window.__sameDocument") is True  # no reload happened


def test_without_sse_the_page_polls(live: Live, page: Any) -> None:
    page.route("**/api/v1/events/stream**", lambda route: route.abort())
    page.add_init_script("window.zfsSyncPollMs = 500")
    page.goto("/systems")
    page.locator("#live-state[data-state=polling]").wait_for()
    page.evaluate("window.__sameDocument = true")
    host = "offsite-vault"
    httpx.post(f"{live.url}/api/v1/systems/{live.fleet.ids[host]}/heartbeat",
               headers=live.fleet.keys[host])
    row = page.locator("#systems-table tbody tr", has_text=host).first
    row.locator(".dot[data-status=online]").wait_for(timeout=10000)
    assert page.evaluate("window.__sameDocument") is True


def test_search_and_sort(live: Live, page: Any) -> None:
    page.goto("/systems")
    page.fill("#filter", "backup")
    visible = page.locator("#systems-table tbody tr:visible")
    assert visible.count() == 2
    page.fill("#filter", "")
    page.click("button[data-sort='3']")  # last seen, oldest heartbeat last
    page.click("button[data-sort='3']")
    first = page.locator("#systems-table tbody tr").first.inner_text()
    assert "new-host" in first


def test_group_matrix_shows_lagging_host(live: Live, page: Any) -> None:
    page.goto("/groups")
    page.click("a:has-text('homelab-backups')")
    cell = page.locator("td.cell[data-host=backup-west]").first
    assert cell.get_attribute("data-status") == "out_of_sync"
    assert "out of sync" in cell.inner_text() and "lag 7 h" in cell.inner_text()
    colour = cell.evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour == "rgb(253, 240, 220)"
    assert page.locator("svg.topology line.edge").count() == 3


def test_sign_in_create_group_and_resolve_conflict(live: Live, page: Any) -> None:
    sign_in(page)
    page.goto("/groups")
    page.click("a:has-text('New group')")
    page.fill("input[name=name]", "browser-made")
    page.check("label:has-text('backup-east') input[name=system_ids]")
    page.check("label:has-text('laptop') input[name=system_ids]")
    page.click("button:has-text('Create group')")
    page.wait_for_url("**/groups/*")
    assert page.locator("h1").inner_text().startswith("browser-made")
    page.goto("/conflicts")
    page.click("a:has-text('Details')")
    discard = page.locator("#would-discard").inner_text()
    assert "local-edit-1" in discard and "local-edit-2" in discard
    page.check("input[value=rollback_target]")
    page.check("input[name=confirm]")
    page.click("button:has-text('Resolve conflict')")
    page.wait_for_selector("text=rollback_target by admin")
    events = httpx.get(f"{live.url}/api/v1/events", params={"type": "conflict.resolved"}).json()
    assert "local-edit-1" in events[0]["message"]


def test_unauthenticated_admin_actions_are_refused(live: Live, page: Any) -> None:
    page.goto(f"/groups/{live.fleet.groups['laptop-home']}")
    assert page.locator("button:has-text('Check now')").count() == 0  # hidden...
    group = live.fleet.groups["laptop-home"]
    for path in ("/groups/new", f"/groups/{group}/check", f"/groups/{group}/enabled"):
        response = page.request.post(path, form={"name": "x", "enabled": "false"})
        assert response.status == 403, path  # ...and refused by the server
    sign_in(page)
    response = page.request.post(f"/groups/{group}/check", form={"csrf": "forged"})
    assert response.status == 403


def test_keyboard_reaches_every_action(live: Live, page: Any) -> None:
    sign_in(page)
    page.goto(f"/groups/{live.fleet.groups['homelab-backups']}")
    total = page.evaluate("""() => {
        const all = [...document.querySelectorAll('a[href], button, input:not([type=hidden]),'
                                                  + ' select, textarea')]
            .filter(e => e.offsetParent !== null && !e.disabled);
        all.forEach((e, i) => e.dataset.kb = String(i));
        return all.length;
    }""")
    reached: set[str] = set()
    for _ in range(total + 10):
        page.keyboard.press("Tab")
        mark = page.evaluate("document.activeElement && document.activeElement.dataset.kb")
        if mark is not None:
            reached.add(mark)
    assert len(reached) == total, sorted(set(map(str, range(total))) - reached)
    # Enter on a focused action works: "Check now" re-plans and comes back to the page.
    page.focus("button:has-text('Check now')")
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    assert "homelab-backups" in page.locator("h1").inner_text()
