"""Cached plans (``plan_cache.py``) are exactly what planning again would give.

The random fleets of ``test_planning_windows`` (claims, resolutions, lagging, diverged and
quiet hosts) are planned through the cache while the clock walks forward over every moment
where the clock alone changes a plan (an edge turning late, a cadence hold or a syncing lease
ending, a host's heartbeat timeout running out, midnight) and 1 µs either side, with hosts
heartbeating on the way. At each moment the cached answer must equal a plan made from
scratch by a session that has no cache.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tests.api.test_planning_windows import differences, random_fleet
from tests.api.test_sync import API, HOUR, NOW, at, instructions, iso, pair, state
from tests.conftest import ADMIN, Witness
from zfs_sync import monitor, planning
from zfs_sync.domain.plan_states import syncing_lease
from zfs_sync.domain.plan_types import GroupPlan
from zfs_sync.domain.plan_validity import next_midnight
from zfs_sync.storage import plan_inputs, revision
from zfs_sync.storage.db import Database
from zfs_sync.storage.models import SyncGroup, SyncState, System

US = timedelta(microseconds=1)


def all_groups(session: Session) -> list[SyncGroup]:
    return plan_inputs.groups_for(session, group_ids=list(session.scalars(select(SyncGroup.id))))


def cached_and_fresh(witness: Witness, now: datetime,
                     only_target: str | None = None) -> tuple[list[GroupPlan], list[GroupPlan]]:
    with witness.db.read() as session:
        groups = (all_groups(session) if only_target is None else
                  plan_inputs.groups_for(session, member=only_target, related=False))
        cached = planning.plan(session, groups, witness.settings, now, only_target=only_target)
    with Session(witness.db.engine) as session:  # no cache in session.info: plans afresh
        groups = (all_groups(session) if only_target is None else
                  plan_inputs.groups_for(session, member=only_target, related=False))
        fresh = planning.plan(session, groups, witness.settings, now, only_target=only_target)
    return cached, fresh


def clock_moments(witness: Witness, plans: list[GroupPlan], start: datetime) -> set[datetime]:
    """Every moment after ``start`` where the clock alone may change a plan, seen from the
    outside (the plans' states, the stored claims, the hosts' heartbeats)."""
    settings = witness.settings
    moments = {next_midnight(start)}
    for plan in plans:
        interval = timedelta(seconds=plan.group.sync_interval_seconds)
        for state in plan.states:
            if state.owed_since is not None:
                moments.add(state.owed_since + interval
                            + timedelta(seconds=settings.late_grace_seconds))
            if state.last_sync is not None:
                moments.add(state.last_sync + interval)
    with witness.db.read() as session:
        intervals = {gid: seconds for gid, seconds in
                     session.execute(select(SyncGroup.id, SyncGroup.sync_interval_seconds))}
        for row in session.scalars(select(SyncState)):
            interval = intervals[row.sync_group_id]
            if row.claim_at is not None:
                moments.add(row.claim_at + timedelta(seconds=interval))
                moments.add(row.claim_at + syncing_lease(interval))
        for system in session.scalars(select(System)):
            if system.last_seen is not None:
                timeout = system.heartbeat_timeout_seconds or settings.heartbeat_timeout_seconds
                moments.add(system.last_seen + timedelta(seconds=timeout))
    return {m for m in moments if m > start}


@pytest.mark.parametrize("seed", range(3))
def test_cached_plans_equal_fresh_plans_as_the_clock_walks(witness: Witness, seed: int) -> None:
    rng = random_fleet(witness, seed)
    cache = witness.db.plan_cache
    now = witness.clock()
    cached, fresh = cached_and_fresh(witness, now)
    assert differences(cached, fresh) == []
    edges = sorted(clock_moments(witness, fresh, now))
    assert len(edges) >= 3
    chosen = rng.sample(edges, min(len(edges), 25))
    walk = sorted({m + d for m in chosen for d in (-US, timedelta(0), US)}
                  | {now + timedelta(minutes=rng.randrange(1, 3 * 24 * 60)) for _ in range(10)})
    with witness.db.read() as session:
        systems = list(session.scalars(select(System.id)))
    hits_before = cache.hits
    problems: list[str] = []
    for index, moment in enumerate(m for m in walk if m >= now):
        if index % 15 == 14:  # some hosts heartbeat on the way, others go quiet
            witness.clock.now = moment
            for system_id in rng.sample(systems, 2):
                response = witness.client.post(f"{API}/systems/{system_id}/heartbeat",
                                               headers={"X-API-Key": witness.keys[system_id]})
                assert response.status_code == 200
        cached, fresh = cached_and_fresh(witness, moment)
        problems += [f"at {moment.isoformat()}: {d}" for d in differences(cached, fresh)]
        if index % 10 == 0:
            target = rng.choice(systems)
            mine, theirs = cached_and_fresh(witness, moment, only_target=target)
            problems += [f"at {moment.isoformat()} for {target[:8]}: {d}"
                         for d in differences(mine, theirs)]
    assert problems == [], "\n".join(problems[:20])
    assert cache.hits > hits_before, "the walk never reused a plan: the test proves nothing"


def revision_value(witness: Witness) -> int | None:
    with witness.db.read() as session:
        return revision.read(session)


def test_reads_reuse_a_plan_until_a_write_changes_its_inputs(witness: Witness) -> None:
    p = pair(witness)
    at(witness, NOW + timedelta(seconds=10))  # at NOW the edge is at its "late" boundary
    cache = witness.db.plan_cache
    first = instructions(witness, p.dst)
    hits = cache.hits
    assert instructions(witness, p.dst) == first
    assert cache.hits == hits + 1
    # A new snapshot on the source: the next read plans again and owes it.
    p.src.add("data", "s23")
    p.src.report()
    after = instructions(witness, p.dst)
    assert after["actions"][-1]["snapshot_name"] == "s23"
    assert after != first


def test_heartbeats_and_the_monitor_leave_the_revision_alone(witness: Witness) -> None:
    p = pair(witness)  # at NOW, the edge is exactly at its "late" boundary
    at(witness, NOW + timedelta(seconds=10))
    instructions(witness, p.dst)
    before = revision_value(witness)
    assert before is not None
    at(witness, NOW + timedelta(seconds=30), p.src, p.dst)  # both were online: neutral
    monitor.tick(witness.db, witness.settings, witness.clock())
    monitor.tick(witness.db, witness.settings, witness.clock())
    assert revision_value(witness) == before
    hits = witness.db.plan_cache.hits
    instructions(witness, p.dst)
    assert witness.db.plan_cache.hits == hits + 1
    p.dst.add("data", "s22")  # a report changes inputs
    p.dst.report()
    assert revision_value(witness) != before


def test_a_heartbeat_from_an_offline_source_is_seen_at_once(witness: Witness) -> None:
    p = pair(witness)
    assert instructions(witness, p.dst)["action_count"] == 1
    at(witness, NOW + HOUR, p.dst)  # the source missed its heartbeats: offline
    held = instructions(witness, p.dst)
    assert held["action_count"] == 0
    assert instructions(witness, p.dst) == held  # cached
    p.src.beat()
    hits = witness.db.plan_cache.hits
    assert instructions(witness, p.dst)["action_count"] == 1
    assert witness.db.plan_cache.hits == hits + 1  # the heartbeat re-planned its groups
    # ... and stored its states then, not at the monitor's next tick.
    assert state(witness, p.group, p.dst)["last_check"] == iso(NOW + HOUR)


def test_a_write_rolled_back_changes_nothing(witness: Witness) -> None:
    pair(witness)
    before = revision_value(witness)
    with pytest.raises(RuntimeError), witness.db.write() as session:
        session.execute(update(SyncGroup).values(enabled=False))
        raise RuntimeError("abandon the transaction")
    assert revision_value(witness) == before


def test_a_write_by_another_process_is_seen(witness: Witness) -> None:
    """Another witness (or `zfs-sync` command) on the same database disables the group."""
    p = pair(witness)
    assert instructions(witness, p.dst)["action_count"] == 1
    other = Database(str(witness.db.engine.url.render_as_string(hide_password=False)))
    try:
        with other.write() as session:
            session.execute(update(SyncGroup).where(SyncGroup.id == p.group)
                            .values(enabled=False))
    finally:
        other.dispose()
    assert instructions(witness, p.dst)["action_count"] == 0


def test_the_clock_going_back_plans_again(witness: Witness) -> None:
    p = pair(witness)
    later = instructions(witness, p.dst)
    witness.clock.now = NOW - timedelta(minutes=1)  # before the cached plan was made
    hits = witness.db.plan_cache.hits
    earlier = instructions(witness, p.dst)
    assert witness.db.plan_cache.hits == hits  # planned again, not reused
    assert earlier["timestamp"] != later["timestamp"]


def test_a_cached_status_shows_the_lag_growing(witness: Witness) -> None:
    p = pair(witness)
    url = f"{API}/sync/groups/{p.group}/status"
    lag: list[Any] = []
    for minutes in (0, 1, 4):  # within the heartbeat timeout (5 min)
        witness.clock.now = NOW + timedelta(minutes=minutes, seconds=10)
        body = witness.client.get(url).json()
        lag.append(next(s["lag_seconds"] for d in body["datasets"] for s in d["systems"]
                        if s["system_id"] == p.dst.id))
    assert lag[1] - lag[0] == 60 and lag[2] - lag[0] == 240
    assert witness.db.plan_cache.hits >= 2


def test_plans_are_not_cached_inside_a_write_that_changed_inputs(witness: Witness) -> None:
    p = pair(witness)
    instructions(witness, p.dst)
    with pytest.raises(RuntimeError), witness.db.write() as session:
        session.execute(update(SyncGroup).values(enabled=False))
        groups = plan_inputs.groups_for(session, member=p.dst.id, related=False)
        inside = planning.plan(session, groups, witness.settings, witness.clock(),
                               only_target=p.dst.id)
        assert inside[0].actions == ()  # its own change, not the cached plan
        raise RuntimeError("abandon the transaction")
    assert instructions(witness, p.dst)["action_count"] == 1


def test_the_revision_row_is_back_after_the_first_write(witness: Witness) -> None:
    """On PostgreSQL the fixture empties every table, this one too: the first write puts the
    row back, so the cache works on both databases."""
    pair(witness)
    assert revision_value(witness) is not None


def test_an_unchanged_report_leaves_cached_plans_valid(witness: Witness) -> None:
    """Agents re-report every few minutes; only a report that changes something counts."""
    p = pair(witness)
    before = revision_value(witness)
    assert p.src.report()["unchanged"] == 3  # full state, as the agent sends it
    response = witness.client.post(f"{API}/snapshots/batch", headers=p.src.headers,
                                   json={"snapshots": [dict(s, system_id=p.src.id)
                                                       for s in p.src.snapshots["data"]]})
    assert response.json()["created"] == 0
    assert revision_value(witness) == before
    datasets = {"datasets": [{"name": "tank/data", "encryption": False}]}
    put = witness.client.put(f"{API}/systems/{p.src.id}/snapshots", json=datasets,
                             headers=p.src.headers)
    assert put.status_code == 200, put.text
    changed = revision_value(witness)
    assert changed != before  # a dataset record is new
    assert witness.client.put(f"{API}/systems/{p.src.id}/snapshots", json=datasets,
                              headers=p.src.headers).status_code == 200
    assert revision_value(witness) == changed
    p.src.drop("data", "s20")
    assert p.src.report()["deleted"] == 1
    assert revision_value(witness) != changed


@pytest.mark.parametrize("seed", range(2))
def test_instructions_from_the_whole_group_plan_equal_the_targets_own(witness: Witness,
                                                                      seed: int) -> None:
    """After a report its groups are planned whole; a target's instructions are then cut
    from those plans instead of planned on their own: the same result."""
    random_fleet(witness, seed)
    now = witness.clock() + timedelta(minutes=1)
    cache = witness.db.plan_cache
    with witness.db.read() as session:
        systems = list(session.scalars(select(System.id)))
    problems: list[str] = []
    for system_id in systems:
        with witness.db.read() as session:
            cache.clear()
            planning.plans_for_groups(session, planning.groups_of_system(session, system_id),
                                      witness.settings, now)  # what a refresh leaves behind
            hits = cache.hits
            got = planning.plans_for_target(session, system_id, witness.settings, now)
            assert cache.hits == hits + 1, "the whole-group plans were not used"
        with Session(witness.db.engine) as session:
            want = planning.plans_for_target(session, system_id, witness.settings, now)
        problems += [f"{system_id[:8]}: {d}" for d in differences(got, want)]
        assert [p.group.id for p in got] == [p.group.id for p in want]
    assert problems == [], "\n".join(problems[:20])


def test_the_cache_keeps_only_the_current_revision_and_is_bounded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from zfs_sync import plan_cache
    from zfs_sync.plan_cache import PlanCache

    cache = PlanCache(max_entries=2)
    later = NOW + HOUR
    cache.put("a", 1, NOW, later, [])
    assert cache.get("a", 1, NOW) == []
    assert cache.get("a", 1, later) is None  # valid until, not at
    assert cache.get("a", 1, NOW - US) is None  # planned later than asked
    assert cache.get("a", 2, NOW) is None
    cache.put("b", 2, NOW, later, [])
    assert cache.get("a", 1, NOW) is None  # another revision: dropped
    cache.put("c", 2, NOW, later, [])
    cache.put("d", 2, NOW, later, [])
    assert cache.get("b", 2, NOW) is None and cache.get("d", 2, NOW) == []  # at most 2
    clock = [0.0]
    monkeypatch.setattr(plan_cache.time, "monotonic", lambda: clock[0])
    cache.put("e", 2, NOW, later, [])
    clock[0] = plan_cache.MAX_AGE_SECONDS
    assert cache.get("e", 2, NOW) is None  # too old, whatever the clock of the plans says


def test_key_changes_keep_plans_and_system_updates_replan_at_once(witness: Witness) -> None:
    p = pair(witness)
    at(witness, NOW + timedelta(seconds=10))
    before = revision_value(witness)
    rotated = witness.client.post(f"{API}/systems/{p.src.id}/api-key/rotate", headers=ADMIN)
    assert rotated.status_code == 200
    assert revision_value(witness) == before  # keys are not in any plan
    update = witness.client.put(f"{API}/systems/{p.src.id}",
                                json={"ssh_hostname": "src2.example"}, headers=ADMIN)
    assert update.status_code == 200, update.text
    assert revision_value(witness) != before
    hits = witness.db.plan_cache.hits
    action = instructions(witness, p.dst)["actions"][0]
    assert witness.db.plan_cache.hits == hits + 1  # the update re-planned the group already
    assert action["source_ssh_hostname"] == "src2.example"
