"""Helpers shared by the routers: auth text in OpenAPI, storage errors to API errors."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute

from zfs_sync.api.errors import ApiError, not_found
from zfs_sync.api.schemas.common import ErrorOut
from zfs_sync.storage.common import NotFound

AUTH_TEXT = {
    "open": "**Auth:** none.",
    "read": "**Auth:** open unless `ZFS_SYNC_PUBLIC_READ=false` (then any system key or the "
    "admin token).",
    "own": "**Auth:** the system's own API key, or the admin token.",
    "admin": "**Auth:** the admin token.",
    "group_admin": "**Auth:** the admin token, unless `ZFS_SYNC_OPEN_ADMIN=true`.",
    "register": "**Auth:** the admin token, unless `ZFS_SYNC_OPEN_REGISTRATION=true` "
    "(`replace=true` always needs the admin token).",
}


_ERROR_TEXT = {
    400: "Malformed request: the body is not JSON, the URL holds control characters, or "
    "X-API-Key and Authorization carry different credentials.",
    401: "A credential is needed and none was sent, or the one sent is not valid.",
    403: "The credential may not do this: another system's key, or a system key where the "
    "admin token is needed.",
    404: "No object with that id.",
    409: "The request conflicts with the stored state; `detail` says how.",
    413: "The request body is larger than ZFS_SYNC_MAX_BODY_BYTES.",
    422: "A value is not valid; `errors` lists each one with its location.",
    429: "Too many failed authentications from this address; wait for Retry-After seconds.",
    503: "The database is unavailable or busy; send the request again after Retry-After.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for error statuses, all with the one error body."""
    return {status: {"model": ErrorOut, "description": _ERROR_TEXT[status]} for status in statuses}


# What every route that reads a credential or the database can answer.
COMMON_ERRORS = error_responses(400, 401, 422, 429, 503)


def doc(level: str, text: str) -> str:
    """A route description that always states its auth."""
    return f"{text}\n\n{AUTH_TEXT[level]}"


def set_total(response: Response, total: int) -> None:
    response.headers["X-Total-Count"] = str(total)


@contextmanager
def translate_not_found() -> Iterator[None]:
    try:
        yield
    except NotFound as exc:
        raise not_found(exc.kind, exc.ident) from None


def bad_request(
    code: str, detail: str, hint: str = "", loc: list[object] | None = None
) -> ApiError:
    errors = [{"loc": loc, "msg": detail}] if loc is not None else None
    return ApiError(422, code, detail, hint, errors=errors)


class _OrjsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


class OrjsonRoute(APIRoute):
    """Decodes JSON bodies with orjson: a host's full report is megabytes of JSON.

    orjson is also strict where ``json`` is not: a lone surrogate escape (``"\\ud800"``)
    cannot be encoded as UTF-8, so neither database can store it and it would be a 500.
    orjson refuses it, and ``orjson.JSONDecodeError`` is a ``json.JSONDecodeError``, so it
    and any other invalid JSON get 400.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def decode_with_orjson(request: Request) -> Response:
            return await handler(_OrjsonRequest(request.scope, request.receive))

        return decode_with_orjson
