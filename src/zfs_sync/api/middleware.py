"""ASGI middleware applied to every route: URL sanity, the request body limit, nosniff."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zfs_sync.api.errors import error_body


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _has_control_characters(scope):
            await self._send_json(send, 400, error_body(
                "The URL contains control characters (such as %00).",
                "E_BAD_URL",
                "Remove control characters from the path and query string.",
            ))
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return
        # Read the whole body first (FastAPI would buffer it anyway), so an oversize
        # streamed body is refused before any route sees a byte of it.
        chunks: list[bytes] = []
        received = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if b"\\u0000" in body:
            # NUL can be stored by neither PostgreSQL nor a ZFS name: refuse it up front so
            # both databases answer alike.
            await self._send_json(send, 422, error_body(
                "The request body contains a NUL character (\\u0000).",
                "E_NUL_CHARACTER",
                "Remove NUL characters from the values and send the request again.",
            ))
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        await self._send_json(send, 413, error_body(
            f"The request body is larger than the limit of {self.max_bytes} bytes.",
            "E_BODY_TOO_LARGE",
            "Send less per request (e.g. report datasets in several scoped PUTs), "
            "or raise ZFS_SYNC_MAX_BODY_BYTES.",
        ))

    async def _send_json(self, send: Send, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _has_control_characters(scope: Scope) -> bool:
    from urllib.parse import unquote_to_bytes

    raw = scope.get("path", "").encode("utf-8", "surrogateescape") + b"?" + scope.get(
        "query_string", b""
    )
    decoded = unquote_to_bytes(raw)
    return any(byte < 0x20 or byte == 0x7F for byte in decoded)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class NoSniffMiddleware:
    """``X-Content-Type-Options: nosniff`` on every response, JSON and HTML alike."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"x-content-type-options" for name, _ in headers):
                    headers.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_header)
