"""Webhook delivery across real restarts of ``zfs-sync serve`` (SIGTERM and SIGKILL).

The receiver fails the first two deliveries. The witness is stopped after the first failure
and killed with SIGKILL after the second; each time a new process starts on the same SQLite
database. The event must arrive exactly once with a 2xx, signed, with its id, and never again
after the success is recorded, even across one more restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import ADMIN, ADMIN_TOKEN
from tests.ops.receiver import Receiver, webhook_receiver
from tests.ops.witness_process import WitnessProcess
from zfs_sync.storage.db import Database
from zfs_sync.storage.models import Event, WebhookCursor

SECRET = "restart-s3cret"
POLL = 0.1


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(POLL)
    raise AssertionError(f"timed out waiting for {what}")


def cursor(db: Database, url: str) -> WebhookCursor | None:
    with db.read() as session:
        row = session.get(WebhookCursor, url)
        if row is not None:
            session.expunge(row)
        return row


def offline_events(db: Database) -> list[int]:
    with db.read() as session:
        return list(session.scalars(select(Event.id).where(Event.type == "system.offline")))


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Receiver, WitnessProcess, Database]]:
    hooks = json.dumps([{"url": "", "events": ["system.offline"], "secret": SECRET}])
    with webhook_receiver(codes=[500, 503]) as receiver:
        witness = WitnessProcess(
            tmp_path,
            ZFS_SYNC_ADMIN_TOKEN=ADMIN_TOKEN,
            ZFS_SYNC_WEBHOOKS=hooks.replace('""', json.dumps(receiver.url)),
            ZFS_SYNC_MONITOR_INTERVAL_SECONDS="1",
            ZFS_SYNC_HEARTBEAT_TIMEOUT_SECONDS="1",
        )
        db = Database(f"sqlite:///{tmp_path / 'zfs_sync.db'}")
        try:
            yield receiver, witness, db
        finally:
            witness.close()
            db.dispose()


def test_restarts_between_failures_lose_nothing_and_repeat_nothing(
    setup: tuple[Receiver, WitnessProcess, Database],
) -> None:
    receiver, witness, db = setup
    witness.start()
    created = httpx.post(f"{witness.url}/api/v1/systems", headers=ADMIN, timeout=30,
                         json={"hostname": "alpha", "platform": "linux"})
    assert created.status_code == 201, created.text
    key = {"X-API-Key": created.json()["api_key"]}
    beat = httpx.post(f"{witness.url}/api/v1/systems/{created.json()['id']}/heartbeat",
                      headers=key, timeout=30)
    assert beat.status_code == 200, beat.text

    # 1st delivery fails (500) and is recorded; then a clean stop (SIGTERM).
    wait_for("the first failure", lambda: (c := cursor(db, receiver.url)) and c.attempts == 1)
    witness.stop()
    (event_id,) = offline_events(db)
    first = cursor(db, receiver.url)
    assert first is not None and first.next_attempt_at is not None
    assert first.last_event_id < event_id and "500" in (first.last_error or "")
    assert len(receiver.calls) == 1

    # A new process has only the database: it waits out the recorded backoff, then retries.
    witness.start()
    wait_for("the second failure", lambda: (c := cursor(db, receiver.url)) and c.attempts == 2,
             timeout=25)
    second_at = datetime.now(UTC)
    assert second_at >= aware(first.next_attempt_at)  # the backoff survived the restart
    assert witness.kill() == -9  # SIGKILL right after the recorded failure
    assert len(receiver.calls) == 2

    # The witness stays down past its next backoff (20 s): rather than sleep, move the due
    # time into the past, as if it had.
    with db.write() as session:
        row = session.get(WebhookCursor, receiver.url)
        assert row is not None and row.attempts == 2 and row.last_event_id < event_id
        row.next_attempt_at = datetime.now(UTC)

    witness.start()
    wait_for("the success to be recorded",
             lambda: (c := cursor(db, receiver.url)) and c.last_event_id >= event_id)
    done = cursor(db, receiver.url)
    assert done is not None
    assert (done.attempts, done.next_attempt_at, done.last_error) == (0, None, None)
    time.sleep(3)  # three more monitor ticks
    witness.stop()
    witness.start()  # and one more restart on the recorded success
    time.sleep(3)

    assert [c.status for c in receiver.calls] == [500, 503, 200]
    assert offline_events(db) == [event_id]  # one event: the restarts did not write another
    for call in receiver.calls:  # the same event, the same signed body, every time
        assert call.headers["X-ZFS-Sync-Event-Id"] == str(event_id)
        assert call.body == receiver.calls[0].body
    (final,) = receiver.delivered
    body = json.loads(final.body)
    assert (body["id"], body["type"]) == (event_id, "system.offline")
    expected = "sha256=" + hmac.new(SECRET.encode(), final.body, hashlib.sha256).hexdigest()
    assert final.headers["X-ZFS-Sync-Signature"] == expected
