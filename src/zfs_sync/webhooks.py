"""Webhook alerts: at-least-once delivery from the event log, signed with HMAC-SHA256.

Each configured URL has a cursor row (``webhook_cursors``): every event up to
``last_event_id`` has been delivered (or did not match the webhook's filter). Delivery walks
the log in id order; a failure stops that webhook until ``next_attempt_at`` (exponential
backoff), so a later event never overtakes an earlier one and nothing is lost when the witness
restarts. The cursor moves in its own transaction right after each success, so an event whose
success was recorded is never sent again.

Alerts about a host's datasets (``sync.*``, ``conflict.*``) are skipped while that host is
offline: its one ``system.offline`` alert says it all.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from zfs_sync.config import Settings, Webhook
from zfs_sync.domain.health import HealthStatus, system_health
from zfs_sync.storage.db import Database
from zfs_sync.storage.models import Event, System, WebhookCursor

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-ZFS-Sync-Signature"
EVENT_ID_HEADER = "X-ZFS-Sync-Event-Id"
EVENT_TYPE_HEADER = "X-ZFS-Sync-Event-Type"
BATCH = 100
TIMEOUT_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 3600
# Events younger than this are left for the next tick: on PostgreSQL a transaction that took
# a smaller id may commit after a larger one, and the cursor must not pass it unseen.
SETTLE_SECONDS = 5
SUPPRESSED_WHILE_OFFLINE = ("sync.", "conflict.")


@dataclass
class DeliveryResult:
    sent: int = 0
    failed: int = 0
    skipped: int = 0


def sign(body: bytes, secret: str) -> str:
    """The signature header's value: ``sha256=<hex HMAC-SHA256 of the body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff_seconds(attempts: int) -> int:
    """10 s, 20 s, 40 s, ... capped at an hour."""
    return int(min(MAX_BACKOFF_SECONDS, 10 * 2 ** max(0, attempts - 1)))


def matches(hook: Webhook, event_type: str) -> bool:
    """Empty ``events`` = all; otherwise an exact type, a prefix (``sync``) or ``*``."""
    if not hook.events:
        return True
    return any(p in ("*", event_type) or event_type.startswith(p.rstrip(".") + ".")
               for p in hook.events)


def payload(event: Event) -> dict[str, Any]:
    return {
        "id": event.id, "type": event.type, "severity": event.severity,
        "created_at": event.created_at.isoformat(), "system_id": event.system_id,
        "sync_group_id": event.sync_group_id, "message": event.message, "data": event.data,
    }


def _cursor(session: Session, url: str, now: datetime) -> WebhookCursor:
    """A new webhook starts after the newest event: it is not sent the whole history."""
    row = session.get(WebhookCursor, url)
    if row is None:
        newest = session.scalar(select(func.max(Event.id))) or 0
        row = WebhookCursor(url=url, last_event_id=newest, attempts=0, updated_at=now)
        session.add(row)
        session.flush()
    return row


def ensure_cursors(db: Database, hooks: Sequence[Webhook], now: datetime) -> None:
    if not hooks:
        return
    with db.write(plan_neutral=True) as session:  # delivery cursors only
        for hook in hooks:
            _cursor(session, hook.url, now)


def _offline(session: Session, system_id: str | None, settings: Settings, now: datetime) -> bool:
    if system_id is None:
        return False
    system = session.get(System, system_id)
    if system is None:
        return False
    timeout = system.heartbeat_timeout_seconds or settings.heartbeat_timeout_seconds
    return system_health(system.last_seen, timeout, now).status is HealthStatus.OFFLINE


def _wanted(session: Session, hook: Webhook, event: Event, settings: Settings,
            now: datetime) -> bool:
    if not matches(hook, event.type):
        return False
    if event.type.startswith(SUPPRESSED_WHILE_OFFLINE) and _offline(
        session, event.system_id, settings, now
    ):
        log.info("webhook %s: event %s (%s) suppressed: its host is offline",
                 hook.url, event.id, event.type)
        return False
    return True


def post(client: httpx.Client, hook: Webhook, event: Event) -> None:
    """Send one event; raises on a transport error or a non-2xx answer."""
    body = json.dumps(payload(event), separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", EVENT_ID_HEADER: str(event.id),
               EVENT_TYPE_HEADER: event.type, "User-Agent": "zfs-sync-witness"}
    if hook.secret:
        headers[SIGNATURE_HEADER] = sign(body, hook.secret)
    response = client.post(hook.url, content=body, headers=headers)
    if not 200 <= response.status_code < 300:
        raise httpx.HTTPStatusError(f"answered {response.status_code}",
                                    request=response.request, response=response)


def _advance(db: Database, url: str, event_id: int, now: datetime) -> None:
    with db.write(plan_neutral=True) as session:  # delivery cursors only
        row = _cursor(session, url, now)
        if row.last_event_id < event_id:
            row.last_event_id = event_id
        row.attempts, row.next_attempt_at, row.last_error, row.updated_at = 0, None, None, now


def _failed(db: Database, url: str, error: str, now: datetime) -> datetime:
    with db.write(plan_neutral=True) as session:  # delivery cursors only
        row = _cursor(session, url, now)
        row.attempts += 1
        row.next_attempt_at = now + timedelta(seconds=backoff_seconds(row.attempts))
        row.last_error, row.updated_at = error[:2000], now
        return row.next_attempt_at


def deliver_one(db: Database, client: httpx.Client, hook: Webhook, settings: Settings,
                now: datetime, result: DeliveryResult) -> None:
    """Send this webhook's pending events in order until one fails."""
    with db.read() as session:
        cursor = session.get(WebhookCursor, hook.url)
        if cursor is None:
            return
        if cursor.next_attempt_at is not None and cursor.next_attempt_at > now:
            return
        settled = now - timedelta(seconds=SETTLE_SECONDS)
        events = list(session.scalars(
            select(Event).where(Event.id > cursor.last_event_id, Event.created_at <= settled)
            .order_by(Event.id).limit(BATCH)))
        wanted = {e.id for e in events if _wanted(session, hook, e, settings, now)}
    for event in events:
        if event.id not in wanted:
            result.skipped += 1
            _advance(db, hook.url, event.id, now)
            continue
        try:
            post(client, hook, event)
        except httpx.HTTPError as exc:
            retry = _failed(db, hook.url, str(exc), now)
            result.failed += 1
            log.error("webhook %s: event %s (%s) not delivered: %s; next attempt at %s",
                      hook.url, event.id, event.type, exc, retry.isoformat())
            return
        result.sent += 1
        _advance(db, hook.url, event.id, now)
        log.info("webhook %s: delivered event %s (%s)", hook.url, event.id, event.type)


def deliver(db: Database, settings: Settings, now: datetime,
            client: httpx.Client | None = None) -> DeliveryResult:
    """Deliver pending events to every configured webhook (one pass)."""
    result = DeliveryResult()
    if not settings.webhooks:
        return result
    own = client is None
    client = client or httpx.Client(timeout=TIMEOUT_SECONDS)
    ensure_cursors(db, settings.webhooks, now)
    try:
        for hook in settings.webhooks:
            deliver_one(db, client, hook, settings, now, result)
    finally:
        if own:
            client.close()
    return result


def undelivered_floor(session: Session, settings: Settings) -> int | None:
    """The smallest cursor among configured webhooks: events after it must be kept."""
    urls = [hook.url for hook in settings.webhooks]
    if not urls:
        return None
    cursors = dict(session.execute(
        select(WebhookCursor.url, WebhookCursor.last_event_id)
        .where(WebhookCursor.url.in_(urls))).all())
    if len(cursors) < len(set(urls)):
        return 0  # a webhook without a cursor yet: keep everything until it has one
    return min(cursors.values())
