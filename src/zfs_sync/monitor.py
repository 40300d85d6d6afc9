"""The monitor: systems that went silent, edges that became late, webhooks, event retention.

``tick(db, settings, now)`` does one round and is what tests call with a fixed ``now``; the
loop (``Monitor``) only calls it every ``monitor_interval_seconds``. Each transition is written
once: a conditional UPDATE moves a stored marker (``systems.offline_notified_seen``,
``sync_states.late_since``) and only the statement that moved it writes the event. With several
witnesses on one PostgreSQL a transaction-level advisory lock makes exactly one of them run a
tick; when that process dies its lock goes with its connection and another runs the next tick.

``system.online`` is not written here: the heartbeat route writes it when a system comes back.
"""

from __future__ import annotations

import fcntl
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
from sqlalchemy import delete, or_, select, text, update
from sqlalchemy.orm import Session

from zfs_sync import planning, webhooks
from zfs_sync.config import Settings
from zfs_sync.domain.health import HealthStatus, system_health
from zfs_sync.domain.plan_types import EdgeState, Group
from zfs_sync.storage.common import utcnow
from zfs_sync.storage.db import Database, sqlite_path
from zfs_sync.storage.events import record_event
from zfs_sync.storage.models import Event, SyncGroup, SyncState, System
from zfs_sync.storage.sync_states import state_id

log = logging.getLogger(__name__)

# An arbitrary constant, distinct from the migration lock's key.
MONITOR_LOCK_KEY = 0x7A66736D  # "zfsm"
# Groups re-planned per write transaction in a tick.
LATE_BATCH = 5


@dataclass
class TickResult:
    ran: bool
    offline: list[str] = field(default_factory=list)
    late: list[str] = field(default_factory=list)
    late_cleared: list[str] = field(default_factory=list)
    pruned: int = 0
    delivery: webhooks.DeliveryResult = field(default_factory=webhooks.DeliveryResult)
    seconds: float = 0.0


@contextmanager
def tick_lock(db: Database) -> Iterator[bool]:
    """True when this process may run the tick; False when another one is running it."""
    if db.is_sqlite:
        with _sqlite_tick_lock(db) as held:
            yield held
        return
    with db.engine.connect() as conn:
        held = bool(conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"),
                                 {"k": MONITOR_LOCK_KEY}).scalar())
        try:
            yield held
        finally:
            conn.rollback()  # ends the transaction, which releases the lock


@contextmanager
def _sqlite_tick_lock(db: Database) -> Iterator[bool]:
    # The same rule for two processes on one SQLite file: a non-blocking flock per tick.
    path = sqlite_path(db.url)
    if path is None:
        yield True
        return
    with open(path.with_name(path.name + ".monitor.lock"), "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def mark_offline(session: Session, settings: Settings, now: datetime) -> list[str]:
    """Write ``system.offline`` once for each silence (each ``last_seen`` value)."""
    candidates = session.scalars(select(System).where(
        System.last_seen.is_not(None),
        or_(System.offline_notified_seen.is_(None),
            System.offline_notified_seen != System.last_seen),
    ))
    went: list[str] = []
    for system in list(candidates):
        timeout = system.heartbeat_timeout_seconds or settings.heartbeat_timeout_seconds
        health = system_health(system.last_seen, timeout, now)
        if health.status is HealthStatus.OFFLINE and _claim_offline(session, system):
            record_event(
                session, "system.offline",
                f"System {system.hostname} is offline: no heartbeat for {health.age_seconds} s "
                f"(timeout {timeout} s)",
                system_id=system.id, severity="warning",
                data={"last_seen": system.last_seen.isoformat() if system.last_seen else None,
                      "timeout_seconds": timeout},
                now=now,
            )
            went.append(system.id)
    return went


def _claim_offline(session: Session, system: System) -> bool:
    # A heartbeat that lands meanwhile changes last_seen, and then this updates nothing.
    result = session.execute(
        update(System)
        .where(System.id == system.id, System.last_seen == system.last_seen,
               or_(System.offline_notified_seen.is_(None),
                   System.offline_notified_seen != system.last_seen))
        .values(offline_notified_seen=system.last_seen)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def enabled_groups(session: Session) -> list[str]:
    return list(session.scalars(select(SyncGroup.id).where(SyncGroup.enabled.is_(True))))


def check_late(
    session: Session, settings: Settings, now: datetime, group_ids: Sequence[str] | None = None
) -> tuple[list[str], list[str]]:
    """Re-plan enabled groups (persisting states and conflicts), then mark late transitions.

    ``group_ids``: only these groups (the tick goes through the groups in batches).
    """
    group_ids = list(enabled_groups(session) if group_ids is None else group_ids)
    if not group_ids:
        return [], []
    plans = planning.refresh(session, group_ids, settings, now)
    names = dict(session.execute(select(System.id, System.hostname)).all())
    marked = _late_markers(session, group_ids)
    late: list[str] = []
    cleared: list[str] = []
    for plan in plans:
        for state in plan.states:
            ident = state_id(state.sync_group_id, state.dataset, state.target_system_id)
            # Most ticks change nothing: skip the edges whose marker already says so rather
            # than send one UPDATE per edge while this transaction holds the writer.
            if marked.get(ident, state.late) == state.late:
                continue
            if _flip_late(session, ident, state.late, now):
                (late if state.late else cleared).append(ident)
                _late_event(session, plan.group, state, ident, names,
                            settings.late_grace_seconds, now)
    return late, cleared


def _late_markers(session: Session, group_ids: list[str]) -> dict[str, bool]:
    """Each stored edge state of these groups: is it marked late?"""
    rows = session.execute(select(SyncState.id, SyncState.late_since)
                           .where(SyncState.sync_group_id.in_(group_ids)))
    return {ident: since is not None for ident, since in rows}


def _flip_late(session: Session, ident: str, late: bool, now: datetime) -> bool:
    marker = SyncState.late_since
    query = update(SyncState).where(SyncState.id == ident)
    query = query.where(marker.is_(None)) if late else query.where(marker.is_not(None))
    result = session.execute(query.values(late_since=now if late else None)
                             .execution_options(synchronize_session=False))
    return bool(getattr(result, "rowcount", 0) == 1)


def _late_event(session: Session, group: Group, state: EdgeState, ident: str,
                names: dict[str, str], grace: int, now: datetime) -> None:
    target = names.get(state.target_system_id, state.target_system_id)
    if state.late:
        type_, severity = "sync.late", "warning"
        message = (f"{group.name}: {state.dataset} on {target} is late: {state.lag_seconds} s "
                   f"behind (interval {group.sync_interval_seconds} s + grace "
                   f"{grace} s)")
    else:
        type_, severity = "sync.late_cleared", "info"
        message = f"{group.name}: {state.dataset} on {target} is no longer late"
    record_event(session, type_, message, system_id=state.target_system_id,
                 sync_group_id=group.id, severity=severity,
                 data={"dataset": state.dataset, "lag_seconds": state.lag_seconds,
                       "status": state.status.value, "state_id": ident,
                       "source_system_id": state.source_system_id},
                 now=now)


def prune_events(session: Session, settings: Settings, now: datetime) -> int:
    """Delete events older than the retention, never one a webhook still has to deliver."""
    cutoff = now - timedelta(days=settings.event_retention_days)
    query = delete(Event).where(Event.created_at < cutoff)
    floor = webhooks.undelivered_floor(session, settings)
    if floor is not None:
        query = query.where(Event.id <= floor)
    result = session.execute(query.execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


def tick(db: Database, settings: Settings, now: datetime,
         client: httpx.Client | None = None) -> TickResult:
    """One round of the monitor at ``now``; ``ran`` is False when another witness has it."""
    started = time.perf_counter()
    with tick_lock(db) as held:
        if not held:
            return TickResult(ran=False)
        result = TickResult(ran=True)
        # Cursors first: a webhook added in this tick must not skip the events it writes.
        webhooks.ensure_cursors(db, settings.webhooks, now)
        # The monitor writes markers, stored states and events, which plans do not read
        # (persist_plans says when a stored state does change an input).
        with db.write(plan_neutral=True) as session:
            result.offline = mark_offline(session, settings, now)
        with db.read() as session:
            group_ids = enabled_groups(session)
        # A few groups per write transaction: on SQLite the writer is held per batch, so
        # reports and heartbeats wait for one batch, never for the whole fleet's planning.
        for start in range(0, len(group_ids), LATE_BATCH):
            batch = group_ids[start : start + LATE_BATCH]
            with db.read() as session:  # plan before the writer's turn: the write finds
                planning.plans_for_groups(session, batch, settings, now)  # them cached
            with db.write(plan_neutral=True) as session:
                late, cleared = check_late(session, settings, now, batch)
            result.late += late
            result.late_cleared += cleared
        with db.write(plan_neutral=True) as session:
            result.pruned = prune_events(session, settings, now)
        result.delivery = webhooks.deliver(db, settings, now, client)
    result.seconds = time.perf_counter() - started
    return result


class Monitor:
    """Calls ``tick`` every ``monitor_interval_seconds`` on a daemon thread."""

    def __init__(self, db: Database, settings: Settings,
                 on_tick: Callable[[TickResult], None] | None = None) -> None:
        self.db, self.settings, self.on_tick = db, settings, on_tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zfs-sync-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def run_forever(self) -> None:
        self._run()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                result = tick(self.db, self.settings, utcnow())
                if self.on_tick is not None and result.ran:
                    self.on_tick(result)
            except Exception:  # the loop must survive a bad tick (database restart, ...)
                log.exception("monitor tick failed; trying again in %s s",
                              self.settings.monitor_interval_seconds)
            self._stop.wait(self.settings.monitor_interval_seconds)
