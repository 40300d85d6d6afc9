"""The web dashboard: server-rendered pages over the same data path as the API."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles


def mount_dashboard(app: FastAPI) -> None:
    """Pages at ``/``, admin forms, and the static CSS/JS at ``/static/dashboard``."""
    from zfs_sync.dashboard import actions, routes

    static = Path(__file__).parent / "static"
    app.mount("/static/dashboard", StaticFiles(directory=str(static)), name="dashboard-static")
    app.include_router(actions.router)  # before routes: /groups/new precedes /groups/{id}
    app.include_router(routes.router)
