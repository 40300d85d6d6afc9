"""A real browser (Debian chromium via playwright) against an in-process witness.

The witness runs under uvicorn on 127.0.0.1 with a settable clock, so the demo fleet's
online/offline states are exact. In CI (``CI=true``) a missing browser or playwright is a
failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ADMIN, ADMIN_TOKEN, Clock
from tests.live import free_port
from zfs_sync.api.app import create_app
from zfs_sync.api.deps import get_now
from zfs_sync.config import load_settings
from zfs_sync.dashboard import demo
from zfs_sync.storage.db import Database

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def require_browser() -> Any:
    """The playwright sync API, or skip (fail in CI) when it or chromium is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "the Python package playwright"
    else:
        if os.path.exists(CHROMIUM) or shutil.which("chromium"):
            return sync_playwright
        missing = f"chromium at {CHROMIUM}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests need {missing} "
                    "(apt-get install chromium; pip install playwright)")
    pytest.skip(f"browser tests need {missing}")


@dataclass
class Live:
    url: str
    clock: Clock
    fleet: demo.Fleet
    db: Database


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    """The demo fleet on a served witness (SQLite; browser tests need one backend)."""
    db_url = f"sqlite:///{tmp_path / 'dash.db'}"
    settings = load_settings(env={}, database_url=db_url, data_dir=str(tmp_path / "data"),
                             admin_token=ADMIN_TOKEN)
    app = create_app(settings)
    clock = Clock()
    app.dependency_overrides[get_now] = clock

    def set_now(moment: datetime) -> None:
        clock.now = moment

    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        fleet = demo.build_demo(client, ADMIN, set_now)
    with demo.serving(app, free_port()) as url:
        yield Live(url, clock, fleet, app.state.db)
    app.state.db.dispose()


@pytest.fixture
def page(live: Live) -> Iterator[Any]:
    sync_playwright = require_browser()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=live.url)
        tab = context.new_page()
        tab.set_default_timeout(15000)
        yield tab
        context.close()
        browser.close()
