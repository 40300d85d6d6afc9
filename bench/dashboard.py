"""Dashboard page times and request counts with 200 systems and 50 groups (printed, not asserted).

    .venv/bin/python bench/dashboard.py [--systems 200] [--groups 50] [--runs 5] [--no-browser]

Builds a fleet through the API on a temporary SQLite database (clock pinned), then times each
page server-side (median of ``--runs``, as it is and right after a write, which makes the page
plan afresh), and, when Debian's chromium and playwright are there,
loads each page in the browser and counts the requests it makes (document, CSS, JS and one
event stream: never one per system or per group).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from fastapi.testclient import TestClient  # noqa: E402

from zfs_sync.api.app import create_app  # noqa: E402
from zfs_sync.api.deps import get_now  # noqa: E402
from zfs_sync.config import load_settings  # noqa: E402
from zfs_sync.dashboard import demo  # noqa: E402

TOKEN = "bench-admin-token-0123456789"


def build(tmp: Path, systems: int, groups: int) -> tuple[Any, demo.Fleet]:
    settings = load_settings(env={}, database_url=f"sqlite:///{tmp / 'bench.db'}",
                             data_dir=str(tmp), admin_token=TOKEN)
    app = create_app(settings)
    clock = {"now": demo.NOW}
    app.dependency_overrides[get_now] = lambda: clock["now"]
    started = time.perf_counter()
    with TestClient(app) as client:
        fleet = demo.build_scaled(client, {"X-API-Key": TOKEN},
                                  lambda moment: clock.__setitem__("now", moment),
                                  systems=systems, groups=groups)
    print(f"built {systems} systems, {groups} groups in {time.perf_counter() - started:.1f} s")
    return app, fleet


def paths(fleet: demo.Fleet) -> list[str]:
    first_group = next(iter(fleet.groups.values()))
    first_system = next(iter(fleet.ids.values()))
    return ["/", "/systems", f"/systems/{first_system}", "/groups", f"/groups/{first_group}",
            "/conflicts", "/activity"]


def time_pages(app: Any, fleet: demo.Fleet, runs: int) -> None:
    """Each page ``runs`` times as it is, then ``runs`` times right after a write (cold: the
    write tells cached plans they may be stale, so the page plans afresh)."""
    with TestClient(app) as client:
        client.get("/")  # let the monitor's first tick (at start) pass

        count = iter(range(10**9))

        def write() -> None:  # a host registers: cached plans may be stale, none re-planned
            body = {"hostname": f"bench-new-{next(count):06d}", "platform": "linux"}
            response = client.post("/api/v1/systems", json=body, headers={"X-API-Key": TOKEN})
            assert response.status_code == 201, response.text

        print(f"{'page':<48} {'median ms':>10} {'max ms':>8} {'cold median':>12} "
              f"{'cold max':>9} {'bytes':>8}")
        for path in paths(fleet):
            times, cold, size = [], [], 0
            for before in [None] * runs + [write] * runs:
                if before is not None:
                    before()
                started = time.perf_counter()
                response = client.get(path)
                (times if before is None else cold).append((time.perf_counter() - started) * 1000)
                size = len(response.content)
                assert response.status_code == 200, (path, response.status_code)
            label = path if len(path) < 48 else path[:45] + "..."
            print(f"{label:<48} {statistics.median(times):>10.1f} {max(times):>8.1f} "
                  f"{statistics.median(cold):>12.1f} {max(cold):>9.1f} {size:>8}")


def browser_requests(app: Any, fleet: demo.Fleet) -> None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("playwright missing: no browser numbers")
        return
    from zfs_sync.dashboard.demo import free_port

    with demo.serving(app, free_port()) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--no-sandbox", "--disable-gpu",
                                          "--disable-background-networking"])
        page = browser.new_page(base_url=url)
        # The browser's first navigation also starts its renderer and fetches CSS and JS into
        # its cache: shown apart, then every page is timed as an operator moving around sees it.
        started = time.perf_counter()
        page.goto("/", wait_until="load")
        print(f"first navigation (renderer start, CSS and JS fetched): "
              f"{(time.perf_counter() - started) * 1000:.0f} ms")
        page.goto("about:blank")
        print(f"{'page (browser)':<48} {'load ms':>10} {'requests':>8}")
        for path in paths(fleet):
            seen: list[str] = []

            def note(request: Any, seen: list[str] = seen) -> None:
                seen.append(request.url)

            page.on("request", note)
            started = time.perf_counter()
            page.goto(path, wait_until="load")
            elapsed = (time.perf_counter() - started) * 1000
            page.wait_for_timeout(300)
            page.remove_listener("request", note)
            label = path if len(path) < 48 else path[:45] + "..."
            print(f"{label:<48} {elapsed:>10.1f} {len(set(seen)):>8}")
            page.goto("about:blank")
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", type=int, default=200)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app, fleet = build(Path(tmp), args.systems, args.groups)
        time_pages(app, fleet, args.runs)
        if not args.no_browser:
            browser_requests(app, fleet)
        app.state.db.dispose()


if __name__ == "__main__":
    main()
