"""Server-Sent Events: follow the event log live (DESIGN.md §7, `GET /events/stream`).

Each replica follows the events table by id (``list_events(after_id=...)``), so a change
written through any replica reaches every stream. ``Last-Event-ID`` resumes after a
reconnect; a comment line keeps idle proxies from closing the connection.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from zfs_sync.api.auth import PrincipalDep, Role, check_read
from zfs_sync.api.deps import DbDep, SettingsDep
from zfs_sync.api.routes.common import COMMON_ERRORS, doc
from zfs_sync.api.schemas.events import EventPublic
from zfs_sync.dashboard import session as dashboard_session
from zfs_sync.storage.db import Database
from zfs_sync.storage.events import list_events

router = APIRouter(prefix="/events", tags=["events"], responses=COMMON_ERRORS)

POLL_SECONDS = 1.0
KEEPALIVE_SECONDS = 15.0
BATCH = 100
_EVENT_ID = re.compile(r"[0-9]{1,10}")
# events.id is a 32-bit INTEGER on PostgreSQL: a bigger id fails the query there.
MAX_EVENT_ID = 2**31 - 1


def newest_event_id(db: Database) -> int:
    with db.read() as session:
        page = list_events(session, limit=1)
    return page.items[0].id if page.items else 0


def events_after(db: Database, after_id: int) -> list[EventPublic]:
    with db.read() as session:
        page = list_events(session, after_id=after_id, limit=BATCH)
        return [EventPublic.model_validate(event) for event in page.items]


def sse_message(event: EventPublic) -> str:
    data = json.dumps(event.model_dump(mode="json"), separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n"


def _start_id(last_event_id: str | None, after_id: int | None, db: Database) -> int | None:
    # ASCII digits only ("²".isdigit() is true, int("²") fails), and an id the database can
    # compare with: anything else is ignored, as a stale or foreign Last-Event-ID would be.
    for value in (last_event_id, after_id):
        if value is not None and _EVENT_ID.fullmatch(str(value)) and int(value) <= MAX_EVENT_ID:
            return int(value)
    return None


async def follow(request: Request, db: Database, start: int | None,
                 max_seconds: float) -> AsyncIterator[str]:
    """Yield SSE lines until the client leaves or ``max_seconds`` pass (it then reconnects)."""
    last = start if start is not None else await run_in_threadpool(newest_event_id, db)
    yield f"retry: 2000\n: following events after {last}\n\n"
    deadline = time.monotonic() + max_seconds
    quiet_since = time.monotonic()
    while time.monotonic() < deadline and not await request.is_disconnected():
        events = await run_in_threadpool(events_after, db, last)
        for event in events:
            last = event.id
            yield sse_message(event)
        if events:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
            quiet_since = time.monotonic()
            yield ": keepalive\n\n"
        if len(events) < BATCH:
            await asyncio.sleep(POLL_SECONDS)


def check_stream_read(request: Request, principal: PrincipalDep, settings: SettingsDep) -> None:
    """Read access, or a dashboard session cookie when public reads are off."""
    if principal.role is Role.ANONYMOUS and dashboard_session.current(request) is not None:
        return
    check_read(principal, settings)


@router.get(
    "/stream",
    response_class=StreamingResponse,
    description=doc(
        "read",
        "Server-Sent Events: every new event as `id:`/`event:`/`data:` (the event as JSON). "
        "Send `Last-Event-ID` (or `after_id`) to resume; without it the stream starts at the "
        "newest event. The stream ends after `max_seconds`; EventSource reconnects on its own.",
    ),
)
def stream_events(
    request: Request,
    principal: PrincipalDep,
    db: DbDep,
    settings: SettingsDep,
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
    after_id: Annotated[int | None, Query(ge=0, le=MAX_EVENT_ID)] = None,
    max_seconds: Annotated[float, Query(gt=0, le=3600)] = 300,
) -> StreamingResponse:
    check_stream_read(request, principal, settings)
    start = _start_id(last_event_id, after_id, db)
    return StreamingResponse(
        follow(request, db, start, max_seconds),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
