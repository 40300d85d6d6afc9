"""One error shape for every failure: ``{detail, code, hint, errors?}``."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Raised anywhere in a request to answer with a clear 4xx."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        hint: str = "",
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.hint = hint
        self.errors = errors
        self.headers = headers


def not_found(kind: str, ident: str, hint: str = "") -> ApiError:
    label = kind.replace("_", " ")
    return ApiError(
        404,
        f"E_{kind.upper()}_NOT_FOUND",
        f"No {label} with id {ident!r}.",
        hint or f"List the existing ones with GET /api/v1/{kind.replace('_', '-')}s.",
    )


def error_body(
    detail: str, code: str, hint: str = "", errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"detail": detail, "code": code, "hint": hint}
    if errors is not None:
        body["errors"] = errors
    return body


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=body, headers=headers)


def _clean_loc(loc: tuple[Any, ...] | list[Any]) -> list[Any]:
    # FastAPI prefixes body fields with "body"; keep it (it says where) but drop pydantic's
    # internal tags such as "function-after[...]".
    return [part for part in loc if not (isinstance(part, str) and "[" in part)]


def _readable(err: dict[str, Any]) -> str:
    msg = str(err.get("msg", "invalid value"))
    return msg.removeprefix("Value error, ")


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [{"loc": _clean_loc(e.get("loc", ())), "msg": _readable(e)} for e in exc.errors()]


async def _on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = validation_errors(exc)
    if any(e.get("type") == "json_invalid" for e in exc.errors()):
        return _json(
            400,
            error_body(
                "The request body is not valid JSON.",
                "E_INVALID_JSON",
                "Send a JSON document with Content-Type: application/json.",
                errors,
            ),
        )
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"]) or "request"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return _json(
        422,
        error_body(
            f"Invalid {where}: {first['msg']}{more}.",
            "E_VALIDATION",
            "Fix the fields listed in 'errors' and send the request again.",
            errors,
        ),
    )


async def _on_api_error(request: Request, exc: ApiError) -> JSONResponse:
    return _json(exc.status, error_body(exc.detail, exc.code, exc.hint, exc.errors), exc.headers)


_HTTP_CODES = {
    401: ("E_UNAUTHORIZED", "Send a credential in X-API-Key or Authorization: Bearer."),
    403: ("E_FORBIDDEN", ""),
    404: ("E_NOT_FOUND", "See /docs for the available routes."),
    405: ("E_METHOD_NOT_ALLOWED", "See /docs for the methods this route accepts."),
    413: ("E_BODY_TOO_LARGE", "Send a smaller request (ZFS_SYNC_MAX_BODY_BYTES)."),
}


async def _on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code, hint = _HTTP_CODES.get(exc.status_code, (f"E_HTTP_{exc.status_code}", ""))
    detail = exc.detail if isinstance(exc.detail, str) else "Request failed."
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"No route {request.url.path}."
    if exc.status_code == 405:
        detail = f"Method {request.method} is not allowed on {request.url.path}."
    return _json(exc.status_code, error_body(detail, code, hint), getattr(exc, "headers", None))


async def _on_data_error(request: Request, exc: DataError) -> JSONResponse:
    # A value the database cannot hold (e.g. a NUL character in free text on PostgreSQL).
    log.warning("database refused a value on %s %s: %s", request.method, request.url.path,
                type(exc.orig).__name__)
    return _json(
        422,
        error_body(
            "A value in the request cannot be stored (for example a NUL character).",
            "E_UNSTORABLE_VALUE",
            "Remove control characters from the values and send the request again.",
        ),
    )


# How long a client should wait before retrying while the database is unavailable.
DATABASE_RETRY_AFTER_SECONDS = 5
# SQLite raises OperationalError for schema bugs too ("no such table"): only these messages
# mean "busy or unreachable, try again", the rest stay 500s.
_SQLITE_TRANSIENT = ("database is locked", "database table is locked", "disk i/o error",
                     "database or disk is full", "unable to open database file")


class _Throttle:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last = -seconds
        self._lock = threading.Lock()

    def due(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.seconds:
                return False
            self._last = now
            return True


_outage_log = _Throttle(10.0)


def database_unavailable(exc: Exception) -> bool:
    """Whether a database error means "down, restarting or busy" rather than a bug."""
    if isinstance(exc, (DisconnectionError, PoolTimeoutError)):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    if type(orig).__module__.startswith("sqlite3"):
        message = str(orig).lower()
        return any(part in message for part in _SQLITE_TRANSIENT)
    # psycopg: connection refused/reset, admin shutdown, "the database system is starting
    # up", a closed connection; all are OperationalError or InterfaceError.
    return type(exc).__name__ in ("OperationalError", "InterfaceError")


async def _on_database_error(request: Request, exc: Exception) -> JSONResponse:
    if not database_unavailable(exc):
        return await _on_unexpected(request, exc)
    orig = getattr(exc, "orig", None) or exc
    first_line = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    # Every request fails alike while the database is down: one warning per interval, not
    # one per request.
    level = logging.WARNING if _outage_log.due() else logging.DEBUG
    log.log(level, "database unavailable on %s %s: %s: %s (answering 503)", request.method,
            request.url.path, type(orig).__name__, first_line)
    return _json(
        503,
        error_body(
            "The database is unavailable or busy, so the request could not be completed.",
            "E_DATABASE_UNAVAILABLE",
            f"Send the request again after {DATABASE_RETRY_AFTER_SECONDS} seconds (a write is "
            "either stored whole or not at all); if this lasts, check the database "
            "(zfs-sync db check).",
        ),
        {"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _json(
        500,
        error_body(
            "The witness hit an internal error.",
            "E_INTERNAL",
            "This is a bug in zfs-sync; the witness log has the details.",
        ),
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation)  # type: ignore[arg-type]
    app.add_exception_handler(ApiError, _on_api_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _on_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(DataError, _on_data_error)  # type: ignore[arg-type]
    for database_error in (DBAPIError, DisconnectionError, PoolTimeoutError):
        app.add_exception_handler(database_error, _on_database_error)
    app.add_exception_handler(Exception, _on_unexpected)
