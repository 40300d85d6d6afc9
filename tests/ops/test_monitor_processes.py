"""Two real ``zfs-sync monitor`` processes on one PostgreSQL database: exactly one sends.

Each process ticks every second; the per-tick advisory lock lets one of them run a tick at a
time (the receiver answers slowly, so a delivery outlasts the other's next tick), and the
stored markers make each transition one event. When the process that sent is
killed with SIGKILL, the other one carries on: the next transition is also sent exactly once.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from tests.conftest import ADMIN_TOKEN, PG_URL, Clock, Witness
from tests.ops.receiver import Receiver, webhook_receiver
from tests.ops.test_webhook_restarts import wait_for
from tests.ops.witness_process import WitnessProcess
from zfs_sync.api.app import create_app
from zfs_sync.api.deps import get_now
from zfs_sync.config import load_settings
from zfs_sync.storage.db import Database, normalise_url
from zfs_sync.storage.models import Event

pytestmark = pytest.mark.postgres


@pytest.fixture
def private_postgres() -> Iterator[str]:
    """A database of this test's own, built through the migrations, dropped afterwards."""
    if not PG_URL:
        pytest.skip("ZFS_SYNC_TEST_POSTGRES_URL is not set")
    base = make_url(normalise_url(PG_URL))
    name = f"zfs_sync_monitors_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    db = Database(url)
    db.upgrade()
    db.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def offline_events(db: Database) -> list[int]:
    with db.read() as session:
        return list(session.scalars(
            select(Event.id).where(Event.type == "system.offline").order_by(Event.id)))


def sent_ids(receiver: Receiver) -> list[int]:
    return [int(c.headers["X-ZFS-Sync-Event-Id"]) for c in receiver.delivered]


def beat_at(witness: Witness, system_id: str, moment: datetime) -> None:
    """A heartbeat recorded at ``moment`` (in the past: the system is already silent)."""
    witness.clock.now = moment
    response = witness.client.post(f"/api/v1/systems/{system_id}/heartbeat",
                                   headers={"X-API-Key": witness.keys[system_id]})
    assert response.status_code == 200, response.text


def delivered_by(monitor: WitnessProcess, event_id: int) -> bool:
    return re.search(rf"delivered event {event_id} \(system\.offline\)", monitor.log()) is not None


def test_two_monitor_processes_send_once_and_survive_a_kill(
    private_postgres: str, tmp_path: Path
) -> None:
    db = Database(private_postgres)
    settings = load_settings(env={}, database_url=private_postgres,
                             data_dir=str(tmp_path), admin_token=ADMIN_TOKEN)
    app = create_app(settings, db=db)
    clock = Clock()
    app.dependency_overrides[get_now] = clock
    # The receiver takes 2 s to answer: a delivery spans two ticks of the other process,
    # which would send the same event again if it did not wait for the tick lock.
    with webhook_receiver(delay=2.0) as receiver, TestClient(app) as client:
        witness = Witness(client, db, clock, settings)
        system_id, _ = witness.register("alpha")
        beat_at(witness, system_id, datetime.now(UTC) - timedelta(hours=1))

        hooks = json.dumps([{"url": receiver.url, "events": ["system.offline"]}])
        monitors = [
            WitnessProcess(tmp_path, "monitor", ZFS_SYNC_DATABASE_URL=private_postgres,
                           ZFS_SYNC_WEBHOOKS=hooks, ZFS_SYNC_MONITOR_INTERVAL_SECONDS="1")
            for _ in range(2)
        ]
        try:
            for monitor in monitors:
                monitor.start()
            wait_for("the first delivery", lambda: receiver.delivered, timeout=60)
            time.sleep(3)  # both keep ticking: several more rounds each
            assert all(m.process is not None and m.process.poll() is None for m in monitors)
            (first,) = offline_events(db)
            assert sent_ids(receiver) == [first] and len(receiver.calls) == 1

            (sender,) = [m for m in monitors if delivered_by(m, first)]
            (survivor,) = [m for m in monitors if m is not sender]
            assert sender.kill() == -9

            # Silent again after a heartbeat an hour ago: the next transition.
            beat_at(witness, system_id, datetime.now(UTC) - timedelta(minutes=30))
            wait_for("the second delivery", lambda: len(receiver.delivered) == 2, timeout=30)
            time.sleep(3)
            assert survivor.process is not None and survivor.process.poll() is None
            second = offline_events(db)[-1]
            assert offline_events(db) == [first, second]
            assert sent_ids(receiver) == [first, second] and len(receiver.calls) == 2
            assert delivered_by(survivor, second) and not delivered_by(sender, second)
        finally:
            for monitor in monitors:
                monitor.close()
            db.dispose()
