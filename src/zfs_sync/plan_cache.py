"""Plans made once and read many times, until the data or the clock says otherwise.

Agents fetch their instructions every few minutes, the dashboard and scripts read the group
status, the monitor re-plans every enabled group on each tick: mostly the same plans, from the
same facts. ``planning.plan`` keeps what it made here, per ``Database``, under the groups and
target it planned, with

- the plan revision it read before loading anything (``storage/revision.py``): every write
  that can change a plan's inputs replaces that value when it commits, in any process;
- the ``now`` it planned at and the plan's ``valid_until`` (``domain/plan_validity.py``): the
  first moment at which the clock alone could change the answer (an edge turning late, a
  cadence hold or a lease ending, a host's heartbeat timeout running out).

A plan is reused for a ``now`` in ``[planned_at, valid_until)`` at an unchanged revision, with
its lags brought forward; never for more than ``MAX_AGE_SECONDS`` of wall time, a bound for
changes made behind the witness's back (a database file edited by hand).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime

from zfs_sync.domain.plan_types import GroupPlan
from zfs_sync.domain.plan_validity import at

PLAN_CACHE = "zfs_sync.plan_cache"  # session.info key (set by Database.read()/write())
MAX_AGE_SECONDS = 300.0
MAX_ENTRIES = 1024  # keys: one per target's instructions, per group set (status, dashboard)


@dataclass(frozen=True)
class _Entry:
    revision: int
    planned_at: datetime
    valid_until: datetime
    plans: tuple[GroupPlan, ...]
    stored: float  # time.monotonic()


class PlanCache:
    """A bounded, thread-safe map of plans; see the module docstring for when one is reused."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries
        self._revision: int | None = None  # of the entries held
        self.hits = self.misses = 0

    def get(
        self,
        key: Hashable,
        revision: int,
        now: datetime,
        narrow: Callable[[GroupPlan], GroupPlan] | None = None,
    ) -> list[GroupPlan] | None:
        """The plans stored under ``key`` as of ``now`` (each ``narrow``-ed first, which saves
        bringing forward the lags of states the caller drops), or None."""
        with self._lock:
            entry = self._entries.get(key)
            usable = (
                entry is not None
                and entry.revision == revision
                and entry.planned_at <= now < entry.valid_until
                and time.monotonic() - entry.stored < MAX_AGE_SECONDS
            )
            if not usable:
                self.misses += 1
                return None
            assert entry is not None
            self._entries.move_to_end(key)
            self.hits += 1
        plans = [narrow(p) for p in entry.plans] if narrow is not None else list(entry.plans)
        return plans if now == entry.planned_at else [at(p, now) for p in plans]

    def put(
        self,
        key: Hashable,
        revision: int,
        now: datetime,
        valid_until: datetime,
        plans: Sequence[GroupPlan],
    ) -> None:
        entry = _Entry(revision, now, valid_until, tuple(plans), time.monotonic())
        with self._lock:
            if self._revision != revision:
                # Revisions are random, never reused: plans filed under another are dead.
                self._entries.clear()
                self._revision = revision
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._revision = None
