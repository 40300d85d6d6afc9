"""The monitor's tick with a pinned ``now``: offline, recovered, late, once per transition."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests.api.test_sync import NOW, at, pair
from tests.conftest import Witness
from tests.ops.receiver import webhook_receiver
from zfs_sync.monitor import tick, tick_lock
from zfs_sync.storage.db import Database
from zfs_sync.storage.models import Event

TIMEOUT = 300


def types(db: Database, prefix: str) -> list[str]:
    with db.read() as session:
        rows = session.scalars(
            select(Event.type).where(Event.type.startswith(prefix)).order_by(Event.id)
        )
        return list(rows)


def beat(witness: Witness, system_id: str, headers: dict[str, str]) -> None:
    response = witness.client.post(f"/api/v1/systems/{system_id}/heartbeat", headers=headers)
    assert response.status_code == 200, response.text


@pytest.fixture
def hooked_witness(make_witness: Any) -> Any:
    def make(url: str, **overrides: Any) -> Witness:
        return make_witness(webhooks=[{"url": url, "secret": "s3cret"}], **overrides)

    return make


def test_offline_once_then_recovered_once(hooked_witness: Any) -> None:
    with webhook_receiver() as receiver:
        witness = hooked_witness(receiver.url)
        db, settings = witness.db, witness.settings
        witness.clock.now = NOW
        system_id, headers = witness.register("alpha")
        beat(witness, system_id, headers)
        tick(db, settings, NOW)  # cursors start here: history before it is not sent
        assert tick(db, settings, NOW + timedelta(seconds=TIMEOUT)).offline == []  # at: online
        first = tick(db, settings, NOW + timedelta(seconds=TIMEOUT + 1))
        assert first.offline == [system_id]
        for step in (60, 120, 600):
            assert tick(db, settings, NOW + timedelta(seconds=TIMEOUT + step)).offline == []
        assert types(db, "system.offline") == ["system.offline"]
        assert [c.headers["X-ZFS-Sync-Event-Type"] for c in receiver.delivered] == [
            "system.offline"
        ]

        back = NOW + timedelta(seconds=1000)
        witness.clock.now = back
        beat(witness, system_id, headers)
        for step in (0, 30, 60):
            assert tick(db, settings, back + timedelta(seconds=step)).offline == []
        assert types(db, "system.o") == ["system.online", "system.offline", "system.online"]
        sent = [c.headers["X-ZFS-Sync-Event-Type"] for c in receiver.delivered]
        assert sent == ["system.offline", "system.online"]

        # A second silence is a second transition: one more event.
        assert tick(db, settings, back + timedelta(seconds=TIMEOUT + 1)).offline == [system_id]
        assert tick(db, settings, back + timedelta(seconds=TIMEOUT + 2)).offline == []
        assert types(db, "system.offline") == ["system.offline"] * 2


def test_never_seen_system_is_not_offline(witness: Witness) -> None:
    witness.register("quiet")
    assert tick(witness.db, witness.settings, NOW + timedelta(days=3)).offline == []


def test_late_edge_once_and_cleared_once(hooked_witness: Any) -> None:
    with webhook_receiver() as receiver:
        witness = hooked_witness(receiver.url)
        p = pair(witness)
        db = witness.db
        patient = witness.settings.model_copy(update={"late_grace_seconds": 100 * 86400})
        strict = witness.settings.model_copy(update={"late_grace_seconds": 0})
        assert tick(db, patient, NOW).late == []
        result = tick(db, strict, NOW)
        assert len(result.late) == 1
        assert tick(db, strict, NOW + timedelta(seconds=30)).late == []
        assert types(db, "sync.late") == ["sync.late"]
        assert [c.headers["X-ZFS-Sync-Event-Type"] for c in receiver.delivered].count(
            "sync.late"
        ) == 1

        later = NOW + timedelta(seconds=60)
        at(witness, later, p.src, p.dst)
        p.dst.add("data", "s22")
        p.dst.report()
        cleared = tick(db, strict, later)
        assert len(cleared.late_cleared) == 1 and cleared.late == []
        assert tick(db, strict, later + timedelta(seconds=30)).late_cleared == []
        assert types(db, "sync.late") == ["sync.late", "sync.late_cleared"]
        sent = [c.headers["X-ZFS-Sync-Event-Type"] for c in receiver.delivered]
        assert sent.count("sync.late") == 1 and sent.count("sync.late_cleared") == 1


def test_alerts_about_an_offline_hosts_datasets_are_suppressed(hooked_witness: Any) -> None:
    with webhook_receiver() as receiver:
        witness = hooked_witness(receiver.url)
        pair(witness)
        db = witness.db
        strict = witness.settings.model_copy(update={"late_grace_seconds": 0})
        silent = NOW + timedelta(seconds=TIMEOUT + 1)  # nobody beat since NOW: both offline
        tick(db, witness.settings, NOW - timedelta(seconds=1))  # cursor before the events
        tick(db, strict, silent)
        tick(db, strict, silent + timedelta(seconds=30))
        assert "sync.late" in types(db, "sync.late")
        sent = [c.headers["X-ZFS-Sync-Event-Type"] for c in receiver.delivered]
        assert sent.count("system.offline") == 2
        assert not any(t.startswith(("sync.", "conflict.")) for t in sent)


def test_two_monitors_on_one_database_send_once(hooked_witness: Any) -> None:
    with webhook_receiver() as receiver:
        witness = hooked_witness(receiver.url)
        witness.clock.now = NOW
        system_id, headers = witness.register("alpha")
        beat(witness, system_id, headers)
        tick(witness.db, witness.settings, NOW)
        others = [Database(witness.db.url), Database(witness.db.url)]
        try:
            for moment in (
                NOW + timedelta(seconds=TIMEOUT + 1),
                NOW + timedelta(seconds=TIMEOUT + 31),
            ):
                threads = [
                    threading.Thread(target=tick, args=(d, witness.settings, moment))
                    for d in others
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(30)
        finally:
            for d in others:
                d.dispose()
        assert types(witness.db, "system.offline") == ["system.offline"]
        assert len(receiver.delivered) == 1
        assert receiver.delivered[0].headers["X-ZFS-Sync-Event-Type"] == "system.offline"


def test_a_held_tick_lock_makes_the_other_witness_skip(db: Database) -> None:
    """PostgreSQL: a transaction-level advisory lock; SQLite: a flock beside the file."""
    from zfs_sync.config import load_settings

    settings = load_settings(env={}, database_url=db.url, admin_token="x" * 20)
    other = Database(db.url)
    try:
        with tick_lock(other) as held:  # the other witness is in the middle of its tick
            assert held
            assert tick(db, settings, NOW).ran is False
        assert tick(db, settings, NOW).ran is True  # it finished (or died): the next tick runs
    finally:
        other.dispose()


def test_monitor_once_command(tmp_path: Any) -> None:
    import json

    from click.testing import CliRunner

    from zfs_sync.cli import main

    env = {"ZFS_SYNC_DATA_DIR": str(tmp_path), "ZFS_SYNC_ADMIN_TOKEN": "x" * 20}
    result = CliRunner().invoke(main, ["monitor", "--once"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["ran"] is True and report["offline"] == []
