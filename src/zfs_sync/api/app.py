"""The witness application factory."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.cors import CORSMiddleware

from zfs_sync import __version__, metrics
from zfs_sync.api.errors import install_error_handlers
from zfs_sync.api.middleware import BodyLimitMiddleware, NoSniffMiddleware
from zfs_sync.api.ratelimit import AuthFailureGuard
from zfs_sync.api.routes import (
    conflicts,
    events,
    groups,
    health,
    protection,
    snapshots,
    stream,
    sync,
    systems,
)
from zfs_sync.bootstrap import ensure_admin_token, open_database
from zfs_sync.config import Settings, load_settings
from zfs_sync.dashboard import mount_dashboard
from zfs_sync.storage.db import Database

API_PREFIX = "/api/v1"

DESCRIPTION = """The zfs-sync witness: hosts report snapshots and heartbeats; it tells each host
what to replicate from which peer.

Credentials go in `X-API-Key: <key>` or `Authorization: Bearer <key>`: a system's own API key
(acts only for that system) or the admin token. Each route says which it needs. Errors are
`{"detail", "code", "hint", "errors"?}`.
"""


def create_app(settings: Settings | None = None, db: Database | None = None) -> FastAPI:
    """Build the app. Opens (creating and migrating) the database unless ``db`` is given."""
    settings = settings or load_settings()
    if db is None:
        db = open_database(settings)
    ensure_admin_token(db, settings)
    app = FastAPI(
        title="zfs-sync witness",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.auth_guard = AuthFailureGuard.from_settings(settings)
    install_error_handlers(app)
    routers = (health.router, systems.router, protection.router, snapshots.router, groups.router,
               sync.router, conflicts.router, stream.router, events.router)
    for router in routers:
        app.include_router(router, prefix=API_PREFIX)
    _mount_docs(app)
    mount_dashboard(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.state.metrics = metrics.Metrics(db, settings)
    app.include_router(metrics.router)
    app.add_middleware(metrics.HttpMetricsMiddleware, metrics=app.state.metrics)
    _add_cors(app, settings)
    app.add_middleware(NoSniffMiddleware)
    return app


def _add_cors(app: FastAPI, settings: Settings) -> None:
    """CORS is closed unless ZFS_SYNC_CORS_ORIGINS names origins; no cookies cross-origin."""
    if not settings.cors_origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "PUT", "DELETE"],
        allow_headers=["Authorization", "X-API-Key", "Content-Type", "Last-Event-ID"],
        expose_headers=["Retry-After"],
    )


def _mount_docs(app: FastAPI) -> None:
    """Swagger UI from files shipped in a package: /docs works with no internet."""
    assets = files("fastapi_offline").joinpath("static")
    app.mount("/static/docs", StaticFiles(directory=str(assets)), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="zfs-sync API",
            swagger_js_url="/static/docs/swagger-ui-bundle.js",
            swagger_css_url="/static/docs/swagger-ui.css",
            swagger_favicon_url="/static/docs/favicon.png",
        )
