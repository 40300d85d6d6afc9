"""Helpers shared by the routers: auth text in OpenAPI, storage errors to API errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import Response

from zfs_sync.api.errors import ApiError, not_found
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
