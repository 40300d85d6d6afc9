from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from zfs_sync import __version__
from zfs_sync.api.deps import DbDep
from zfs_sync.api.routes.common import doc

router = APIRouter(tags=["health"])


@router.get("/health", description=doc("open", "Liveness and version of the witness."))
def health() -> dict[str, str]:
    return {"status": "healthy", "version": __version__}


@router.get("/health/live", description=doc("open", "The process answers."))
def live() -> dict[str, str]:
    return {"status": "alive"}


@router.get(
    "/health/ready",
    description=doc("open", "The database answers and its schema is at the newest migration."),
    responses={503: {"description": "Not ready"}},
)
def ready(db: DbDep) -> JSONResponse:
    try:
        at_head = db.is_at_head()
    except Exception as exc:  # any database failure means "not ready", never a 500
        body = {"status": "unavailable", "database": "unreachable", "detail": type(exc).__name__,
                "code": "E_DATABASE_UNAVAILABLE", "hint": "Check the database and its URL."}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})
    if not at_head:
        body = {"status": "unavailable", "database": "migrations pending",
                "detail": "The database schema is not at the newest migration.",
                "code": "E_MIGRATIONS_PENDING", "hint": "Run `zfs-sync db upgrade`."}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})
    return JSONResponse({"status": "ready", "database": "ok"})
