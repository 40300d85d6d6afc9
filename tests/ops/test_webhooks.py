"""Webhook delivery: signed, with the event id, retried with backoff, never lost or repeated."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from tests.api.test_sync import NOW
from tests.conftest import Witness
from tests.ops.receiver import webhook_receiver
from zfs_sync.config import Webhook
from zfs_sync.monitor import tick
from zfs_sync.storage.db import Database
from zfs_sync.storage.models import WebhookCursor
from zfs_sync.webhooks import backoff_seconds, matches, sign

SECRET = "s3cret"


def offline_event(witness: Witness) -> None:
    """One ``system.offline`` event written by a tick at NOW + 301 s."""
    witness.clock.now = NOW
    system_id, headers = witness.register("alpha")
    witness.client.post(f"/api/v1/systems/{system_id}/heartbeat", headers=headers)
    tick(witness.db, witness.settings, NOW)
    assert tick(witness.db, witness.settings, NOW + timedelta(seconds=301)).offline


def test_fails_twice_then_delivers_once_across_restarts(make_witness: Any) -> None:
    with webhook_receiver(codes=[500, 503]) as receiver:
        witness = make_witness(webhooks=[{"url": receiver.url, "secret": SECRET}])
        offline_event(witness)
        t = NOW + timedelta(seconds=331)
        assert tick(witness.db, witness.settings, t).delivery.failed == 1
        # Within the backoff nothing is tried.
        assert tick(witness.db, witness.settings, t + timedelta(seconds=5)).delivery.failed == 0
        assert len(receiver.calls) == 1

        # "Restart": a new process has only the database.
        restarted = Database(witness.db.url)
        try:
            t += timedelta(seconds=backoff_seconds(1))
            assert tick(restarted, witness.settings, t).delivery.failed == 1
            t += timedelta(seconds=backoff_seconds(2))
            assert tick(restarted, witness.settings, t).delivery.sent == 1
            for step in (60, 600, 6000):
                assert (
                    tick(restarted, witness.settings, t + timedelta(seconds=step)).delivery.sent
                    == 0
                )
            with restarted.read() as session:
                cursor = session.scalars(select(WebhookCursor)).one()
                assert (cursor.attempts, cursor.last_error, cursor.next_attempt_at) == (
                    0,
                    None,
                    None,
                )
        finally:
            restarted.dispose()

        assert [c.status for c in receiver.calls] == [500, 503, 200]
        ids = {c.headers["X-ZFS-Sync-Event-Id"] for c in receiver.calls}
        assert len(ids) == 1  # the same event each time
        final = receiver.delivered[0]
        body = json.loads(final.body)
        assert str(body["id"]) == final.headers["X-ZFS-Sync-Event-Id"]
        assert body["type"] == "system.offline"
        expected = "sha256=" + hmac.new(SECRET.encode(), final.body, hashlib.sha256).hexdigest()
        assert final.headers["X-ZFS-Sync-Signature"] == expected == sign(final.body, SECRET)


def test_events_are_delivered_in_order_and_filtered(make_witness: Any) -> None:
    with webhook_receiver() as everything, webhook_receiver() as only_online:
        witness = make_witness(
            webhooks=[
                {"url": everything.url},
                {"url": only_online.url, "events": ["system.online"]},
            ]
        )
        offline_event(witness)
        tick(witness.db, witness.settings, NOW + timedelta(seconds=400))
        assert [c.headers["X-ZFS-Sync-Event-Type"] for c in everything.delivered] == [
            "system.offline"
        ]
        assert "X-ZFS-Sync-Signature" not in everything.delivered[0].headers  # no secret
        assert only_online.calls == []


def test_unreachable_receiver_keeps_the_event(make_witness: Any) -> None:
    with webhook_receiver() as gone:
        url = gone.url
    witness = make_witness(webhooks=[{"url": url}])
    offline_event(witness)
    result = tick(witness.db, witness.settings, NOW + timedelta(seconds=400))
    assert result.delivery.failed == 1
    with witness.db.read() as session:
        cursor = session.get(WebhookCursor, url)
        assert cursor is not None and cursor.attempts == 1 and cursor.last_error


def test_filters_and_backoff() -> None:
    hook = Webhook(url="http://127.0.0.1/x", events=["sync", "system.offline"])
    assert matches(hook, "sync.late") and matches(hook, "system.offline")
    assert not matches(hook, "system.online") and not matches(hook, "synchronised")
    assert matches(Webhook(url="http://127.0.0.1/x"), "anything")
    assert [backoff_seconds(n) for n in (1, 2, 3)] == [10, 20, 40]
    assert backoff_seconds(50) == 3600


def test_retention_keeps_undelivered_events(make_witness: Any) -> None:
    from zfs_sync.storage.models import Event

    with webhook_receiver(codes=[500] * 100) as receiver:
        witness = make_witness(webhooks=[{"url": receiver.url}], event_retention_days=1)
        offline_event(witness)
        far = NOW + timedelta(days=30)
        tick(witness.db, witness.settings, far)
        with witness.db.read() as session:
            kept = list(session.scalars(select(Event.type)))
        assert "system.offline" in kept  # undelivered: kept past the retention
        assert "system.registered" not in kept  # before the webhook's cursor: pruned
