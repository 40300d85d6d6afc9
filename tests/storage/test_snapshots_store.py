"""Snapshot storage: the full-report diff, its stored forms, roots, and the comparisons."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import DateTime, select, text

from zfs_sync.storage import snapshots as store
from zfs_sync.storage.common import NotFound, new_id
from zfs_sync.storage.db import Database
from zfs_sync.storage.models import GroupMember, Snapshot, SyncGroup
from zfs_sync.storage.roots import system_roots
from zfs_sync.storage.snapshot_queries import SnapRef, compare, union_gaps
from zfs_sync.storage.systems import register_system

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
T0 = datetime(2026, 11, 1, 0, 0, 0, 123456, tzinfo=timezone.utc)


def add_system(db: Database, hostname: str) -> str:
    with db.write() as session:
        system, _ = register_system(session, {"hostname": hostname, "platform": "linux"}, NOW)
        return system.id


def facts(dataset: str = "tank/data", name: str = "s1", **values: Any) -> store.SnapshotFacts:
    base: dict[str, Any] = {"timestamp": T0, "guid": 2**64 - 1, "createtxg": 5, "size": 10,
                            "referenced": 20}
    return store.SnapshotFacts(None, dataset.split("/")[0], dataset, name, **{**base, **values})


def replace(db: Database, system_id: str, items: list[store.SnapshotFacts], **kw: Any) -> Any:
    with db.write() as session:
        return store.replace_system_snapshots(session, system_id, items, NOW, **kw)


def stored(db: Database, system_id: str) -> dict[str, Snapshot]:
    with db.read() as session:
        query = select(Snapshot).where(Snapshot.system_id == system_id)
        return {f"{s.dataset}@{s.name}": s for s in session.scalars(query)}


@pytest.fixture
def system(db: Database) -> str:
    return add_system(db, "alpha")


def test_unchanged_report_writes_nothing(
    db: Database, system: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = [facts(name=f"s{i}", timestamp=T0 + timedelta(hours=i)) for i in range(50)]
    assert replace(db, system, state) == store.WriteCounts(created=50)
    before = stored(db, system)
    written: list[int] = []
    for method in ("insert", "update", "delete"):
        original = getattr(store._Bulk, method)

        def spy(self: Any, rows: list[Any], _original: Any = original) -> None:
            written.append(len(rows))
            _original(self, rows)

        monkeypatch.setattr(store._Bulk, method, spy)
    with db.write() as session:
        raw = session.connection().connection.driver_connection
        changes = getattr(raw, "total_changes", None)
        counts = store.replace_system_snapshots(
            session, system, state, NOW + timedelta(days=1)
        )
        if changes is not None:  # SQLite counts every row written
            assert raw.total_changes == changes
    assert counts == store.WriteCounts(unchanged=50)
    assert written == [0, 0, 0]
    after = stored(db, system)
    assert {k: (s.id, s.updated_at) for k, s in after.items()} == {
        k: (s.id, s.updated_at) for k, s in before.items()}


def test_diff_inserts_updates_deletes_and_keeps_known_values(db: Database, system: str) -> None:
    replace(db, system, [facts(name="keep"), facts(name="change"), facts(name="gone")])
    report = [
        facts(name="keep", guid=None, createtxg=None, size=None, referenced=None),  # nothing new
        facts(name="change", size=99, timestamp=T0 + timedelta(seconds=1)),
        facts(name="new", guid=2**63),
    ]
    assert replace(db, system, report) == store.WriteCounts(1, 1, 1, 1)
    rows = stored(db, system)
    assert sorted(rows) == ["tank/data@change", "tank/data@keep", "tank/data@new"]
    keep = rows["tank/data@keep"]
    assert (keep.guid, keep.createtxg, keep.size, keep.referenced) == (2**64 - 1, 5, 10, 20)
    change = rows["tank/data@change"]
    assert (change.size, change.timestamp, change.updated_at) == (
        99, T0 + timedelta(seconds=1), NOW)
    assert rows["tank/data@new"].guid == 2**63


def test_scope_limits_what_is_loaded_and_deleted(db: Database, system: str) -> None:
    other = add_system(db, "beta")
    everything = [facts(dataset=f"tank/{d}", name=n) for d in "abc" for n in "xy"]
    replace(db, system, everything)
    replace(db, other, everything)
    counts = replace(db, system, [facts(dataset="tank/a", name="x")], scope=["tank/a", "tank/b"])
    assert counts == store.WriteCounts(deleted=3, unchanged=1)
    assert sorted(stored(db, system)) == ["tank/a@x", "tank/c@x", "tank/c@y"]
    assert len(stored(db, other)) == 6


def test_a_failed_report_changes_nothing(
    db: Database, system: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    replace(db, system, [facts(name="old")])

    def boom(self: Any, ids: list[str]) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(store._Bulk, "delete", boom)
    with pytest.raises(RuntimeError):
        replace(db, system, [facts(name="new1"), facts(name="new2")])
    assert sorted(stored(db, system)) == ["tank/data@old"]


def test_unknown_system(db: Database) -> None:
    with pytest.raises(NotFound):
        replace(db, "nope", [facts()])
    with pytest.raises(NotFound), db.write() as session:
        store.upsert_snapshots(session, [facts()._replace(system_id="nope")], NOW)


def test_bulk_and_orm_store_timestamps_alike(db: Database, system: str) -> None:
    """The raw rows the bulk path writes read back like ORM rows, and compare equal to them."""
    with db.write() as session:
        session.add(Snapshot(id=new_id(), system_id=system, pool="tank", dataset="tank/orm",
                             name="s", guid=2**63 + 1, createtxg=5, timestamp=T0, size=10,
                             referenced=20, created_at=NOW, updated_at=NOW))
    assert replace(db, system, [facts(dataset="tank/orm", name="s", guid=2**63 + 1),
                                facts(dataset="tank/bulk", name="s")],
                   scope=["tank/orm", "tank/bulk"]) == store.WriteCounts(created=1, unchanged=1)
    with db.read() as session:
        raw = dict(session.execute(text("SELECT dataset, timestamp FROM snapshots")).all())
    assert raw["tank/orm"] == raw["tank/bulk"]
    rows = stored(db, system)
    assert rows["tank/bulk@s"].timestamp == T0 and rows["tank/bulk@s"].created_at == NOW
    assert rows["tank/orm@s"].guid == 2**63 + 1


def test_timestamp_binder_matches_the_column_type(db: Database) -> None:
    dialect = db.engine.dialect
    bind = store.timestamp_binder(dialect)
    processor = DateTime().dialect_impl(dialect).bind_processor(dialect) or (lambda v: v)
    berlin = timezone(timedelta(hours=1))
    for value in (T0, datetime(1, 1, 1, tzinfo=timezone.utc),
                  datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
                  datetime(2026, 11, 26, 13, 0, tzinfo=berlin)):
        naive = value.astimezone(timezone.utc).replace(tzinfo=None)
        assert bind(value) == processor(naive)


def test_new_ids_are_increasing_uuid7() -> None:
    ids = store.new_ids(1000)
    assert len(set(ids)) == 1000 and ids == sorted(ids)
    parsed = [uuid.UUID(value) for value in ids]
    assert {(u.version, u.variant) for u in parsed} == {(7, uuid.RFC_4122)}
    assert all(str(u) == value for u, value in zip(parsed, ids, strict=True))
    assert store.new_ids(0) == []


def test_concurrent_reports_of_one_system(db: Database, system: str) -> None:
    """Two reports at once (two agent cycles, or a replica each) never collide."""
    state = [facts(name=f"s{i}") for i in range(200)]
    results: list[Any] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        try:
            results.append(replace(db, system, state))
        except Exception as exc:  # reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results, key=lambda r: r.created) == [
        store.WriteCounts(unchanged=200), store.WriteCounts(created=200)]
    assert len(stored(db, system)) == 200


def test_upsert_counts_across_systems(db: Database, system: str) -> None:
    other = add_system(db, "beta")
    batch = [facts()._replace(system_id=system), facts()._replace(system_id=other),
             facts(name="s2")._replace(system_id=other)]
    with db.write() as session:
        assert store.upsert_snapshots(session, batch, NOW) == store.WriteCounts(created=3)
    changed = [facts(size=1)._replace(system_id=system), facts()._replace(system_id=other)]
    with db.write() as session:
        assert store.upsert_snapshots(session, changed, NOW) == store.WriteCounts(
            updated=1, unchanged=1)


# -- roots ------------------------------------------------------------------------------------


def member(db: Database, system_id: str, root: str | None, added: datetime, name: str) -> None:
    with db.write() as session:
        group = SyncGroup(id=new_id(), name=name, description="", enabled=True,
                          sync_interval_seconds=3600, directional=False, datasets=[],
                          snapshot_pattern="", allow_rollback=False, created_at=added,
                          updated_at=added)
        session.add(group)
        session.flush()
        session.add(GroupMember(group_id=group.id, system_id=system_id, root=root, added_at=added))


def test_system_roots(db: Database) -> None:
    one_pool, two_pools, nothing, member_root, two_groups = (
        add_system(db, name) for name in ("a", "b", "c", "d", "e"))
    replace(db, one_pool, [facts("tank/x"), facts("tank/y/z")])
    replace(db, two_pools, [facts("tank/x"), facts("rpool/x")])
    replace(db, member_root, [facts("tank/x"), facts("rpool/x")])
    member(db, member_root, "rpool/backup", NOW, "g1")
    member(db, two_pools, None, NOW, "g2")  # a membership without a root changes nothing
    member(db, two_groups, "new/root", NOW, "g3")
    member(db, two_groups, "old/root", NOW - timedelta(days=1), "g4")
    member(db, two_groups, "", NOW - timedelta(days=2), "g5")  # empty = not set
    with db.read() as session:
        roots = system_roots(session, [one_pool, two_pools, nothing, member_root, two_groups])
        assert system_roots(session, []) == {}
    assert roots == {one_pool: "tank", two_pools: None, nothing: None,
                     member_root: "rpool/backup", two_groups: "old/root"}


# -- comparisons (pure) -----------------------------------------------------------------------


def ref(name: str, guid: int | None, day: int = 1) -> SnapRef:
    return SnapRef(name, guid, datetime(2026, 11, day, tzinfo=timezone.utc))


def test_compare_identity_rules() -> None:
    side_1 = [ref("a", 1), ref("b", 2), ref("c", None), ref("d", 4), ref("e", 5)]
    side_2 = [ref("a", 1), ref("b-renamed", 2), ref("c", 3), ref("d", 40), ref("f", 6)]
    result = compare(side_1, side_2)
    assert result.common == 3
    assert result.diverged == [(ref("d", 4), ref("d", 40))]
    assert result.only_1 == [ref("e", 5)] and result.only_2 == [ref("f", 6)]
    assert compare([], side_2).only_2 == side_2
    assert compare([ref("x", None), ref("x", None)], [ref("x", None)]).only_1 == [ref("x", None)]


def test_union_gaps() -> None:
    union = union_gaps({
        "a": [ref("s1", 1, 1), ref("s2", 2, 2)],
        "b": [ref("s1", None, 1), ref("s3", 3, 3)],  # s1 by name: it has no guid here
        "c": [ref("s2", 20, 2)],  # s2 with another guid: a different snapshot
    })
    assert [(e.snapshot.name, e.snapshot.guid, sorted(e.holders)) for e in union] == [
        ("s1", 1, ["a", "b"]), ("s2", 2, ["a"]), ("s2", 20, ["c"]), ("s3", 3, ["b"])]
