"""Sync over HTTP: instructions, state reports, states, group status, checks, protection.

Every test runs on SQLite and PostgreSQL (the ``witness`` fixture). Time is pinned with
``witness.clock.now``; hosts heartbeat at the pinned time so that they are online unless a
test says otherwise. Snapshot ``sNN`` is created NN hours after ``BASE`` (``s20`` is four
hours before ``NOW``), and the same snapshot has the same guid on every host.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import ADMIN, Witness
from zfs_sync.storage.sync_states import state_id

API = "/api/v1"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
BASE = NOW - timedelta(hours=24)
HOUR = timedelta(hours=1)

# DESIGN.md section 7, "Action": exactly these fields, always present (sync_command null
# without include_commands, reason null when there is nothing to explain).
ACTION_FIELDS = {
    "action_id", "action_type", "sync_group_id", "dataset", "source_system_id",
    "target_system_id", "source_pool", "source_dataset", "target_pool", "target_dataset",
    "snapshot_name", "snapshot_id", "incremental_base", "is_incremental",
    "include_intermediate", "rollback_to_base", "estimated_size", "priority", "sequence",
    "source_ssh_hostname", "source_ssh_user", "source_ssh_port", "pipeline", "sync_command",
    "reason",
}
SSH = ["ssh", "-n", "-o", "BatchMode=yes", "-p", "22"]


# -- a small fleet driven through the API -----------------------------------------------------


def created(name: str) -> datetime:
    """``s07`` -> BASE + 7 h (the trailing number is the hour)."""
    found = re.search(r"(\d+)$", name)
    assert found, name
    return BASE + int(found.group(1)) * HOUR


def guid_of(*parts: str) -> int:
    return int(hashlib.sha256("|".join(parts).encode()).hexdigest()[:16], 16)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass
class Host:
    """One registered system and the snapshots it reports (full state, like the agent)."""

    witness: Witness
    id: str
    headers: dict[str, str]
    root: str
    snapshots: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # logical -> items

    def dataset(self, logical: str) -> str:
        return f"{self.root}/{logical}" if logical else self.root

    def add(self, logical: str, *names: str, own: bool = False, when: datetime | None = None,
            guids: bool = True) -> None:
        """Snapshots of ``logical``; ``own`` ones exist only here (a guid nobody else has)."""
        for name in names:
            moment = when or created(name)
            origin = (self.id,) if own else ()
            item: dict[str, Any] = {
                "name": name,
                "pool": self.root.split("/")[0],
                "dataset": self.dataset(logical),
                "timestamp": iso(moment),
                "used": 1000 * int(moment.timestamp() // 3600 % 1000),
                "referenced": 5000,
                "createtxg": int(moment.timestamp()) + (1 if own else 0),
            }
            if guids:
                item["guid"] = str(guid_of(*origin, logical, name))
            self.snapshots.setdefault(logical, []).append(item)

    def drop(self, logical: str, *names: str) -> None:
        self.snapshots[logical] = [s for s in self.snapshots[logical] if s["name"] not in names]

    def report(self) -> dict[str, Any]:
        body = {"snapshots": [s for items in self.snapshots.values() for s in items]}
        response = self.witness.client.put(
            f"{API}/systems/{self.id}/snapshots", json=body, headers=self.headers
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    def beat(self) -> None:
        response = self.witness.client.post(
            f"{API}/systems/{self.id}/heartbeat", headers=self.headers
        )
        assert response.status_code == 200, response.text

    def snapshot_id(self, logical: str, name: str) -> str:
        response = self.witness.client.get(
            f"{API}/snapshots",
            params={"system_id": self.id, "dataset": self.dataset(logical), "name": name},
        )
        found = response.json()
        assert len(found) == 1, found
        return str(found[0]["id"])


def host(witness: Witness, hostname: str, root: str, **extra: Any) -> Host:
    system_id, headers = witness.register(hostname, **extra)
    made = Host(witness, system_id, headers, root)
    made.beat()
    return made


def group(witness: Witness, hub: Host | None, *members: Host, name: str = "g1",
          **fields: Any) -> str:
    body: dict[str, Any] = {
        "name": name,
        "members": [{"system_id": m.id, "root": m.root} for m in members],
        **fields,
    }
    if hub is not None:
        body.update(directional=True, hub_system_id=hub.id)
    response = witness.client.post(f"{API}/sync-groups", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@dataclass
class Pair:
    """A source (hub) and one target in a directional group."""

    witness: Witness
    src: Host
    dst: Host
    group: str


def pair(witness: Witness, src_names: Sequence[str] = ("s20", "s21", "s22"),
         dst_names: Sequence[str] | None = ("s20", "s21"), dst_root: str = "backup",
         **group_fields: Any) -> Pair:
    """src (tank, ssh zfs@src.example) -> dst (``dst_root``) for logical dataset ``data``;
    ``dst_names`` None: the target lacks the dataset."""
    witness.clock.now = NOW
    src = host(witness, "src", "tank", ssh_hostname="src.example", ssh_user="zfs")
    dst = host(witness, "dst", dst_root, ssh_hostname="dst.example")
    src.add("data", *src_names)
    src.report()
    if dst_names is not None:
        dst.add("data", *dst_names)
        dst.report()
    return Pair(witness, src, dst, group(witness, src, src, dst, **group_fields))


def at(witness: Witness, moment: datetime, *online: Host) -> None:
    """Move the clock; the given hosts heartbeat at the new time."""
    witness.clock.now = moment
    for member in online:
        member.beat()


def instructions(witness: Witness, target: Host, **params: Any) -> dict[str, Any]:
    response = witness.client.get(
        f"{API}/sync/instructions/{target.id}", params=params, headers=target.headers
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def report_state(witness: Witness, target: Host, group_id: str, status: str,
                 **extra: Any) -> Any:
    body = {"sync_group_id": group_id, "system_id": target.id, "status": status, **extra}
    return witness.client.post(f"{API}/sync/states", json=body, headers=target.headers)


def state(witness: Witness, group_id: str, target: Host, dataset: str = "data") -> dict[str, Any]:
    response = witness.client.get(f"{API}/sync/states/{state_id(group_id, dataset, target.id)}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def status(witness: Witness, group_id: str) -> dict[str, Any]:
    response = witness.client.get(f"{API}/sync/groups/{group_id}/status")
    assert response.status_code == 200, response.text
    return dict(response.json())


def events(witness: Witness, type_: str) -> list[dict[str, Any]]:
    response = witness.client.get(f"{API}/events", params={"type": type_, "limit": 1000})
    assert response.status_code == 200, response.text
    return list(reversed(response.json()))  # oldest first


def kinds(actions: Iterable[dict[str, Any]]) -> list[tuple[str, int, str | None]]:
    return [(a["action_type"], a["sequence"], a["snapshot_name"]) for a in actions]


def deliver(target: Host, source: Host, logical: str, action: dict[str, Any]) -> None:
    """Pretend the action ran: the target now holds what it delivered (its report follows)."""
    names = [s["name"] for s in source.snapshots[logical]]
    have = {s["name"] for s in target.snapshots.get(logical, [])}
    last = names.index(action["snapshot_name"])
    first = last if not action["include_intermediate"] else names.index(action["incremental_base"])
    for name in names[first : last + 1]:
        if name not in have:
            target.add(logical, name)


def stages(command: str) -> list[list[str]]:
    """Split a sync_command at its top-level `&&` and `|` the way a shell would."""
    words = shlex.shlex(command, posix=True, punctuation_chars="&|")
    words.whitespace_split = True
    found: list[list[str]] = [[]]
    separators = []
    for word in words:
        if word in ("&&", "|"):
            separators.append(word)
            found.append([])
        else:
            found[-1].append(word)
    return found


# -- instructions -------------------------------------------------------------------------------


def test_incremental_action_has_every_field(witness: Witness) -> None:
    p = pair(witness)
    plain = instructions(witness, p.dst)
    assert set(plain) == {"system_id", "timestamp", "action_count", "sync_groups", "actions"}
    assert plain["system_id"] == p.dst.id and plain["timestamp"] == "2026-11-26T12:00:00Z"
    assert plain["action_count"] == 1 == len(plain["actions"])
    assert plain["sync_groups"] == [p.group]
    action = plain["actions"][0]
    assert set(action) == ACTION_FIELDS
    assert action["sync_command"] is None
    expected_pipeline = [
        ["zfs", "rollback", "backup/data@s21"],
        [*SSH, "zfs@src.example", "zfs send -I tank/data@s21 tank/data@s22"],
        ["zfs", "receive", "-u", "backup/data"],
    ]
    assert {k: v for k, v in action.items() if k != "action_id"} == {
        "action_type": "incremental_send",
        "sync_group_id": p.group,
        "dataset": "data",
        "source_system_id": p.src.id,
        "target_system_id": p.dst.id,
        "source_pool": "tank",
        "source_dataset": "tank/data",
        "target_pool": "backup",
        "target_dataset": "backup/data",
        "snapshot_name": "s22",
        "snapshot_id": p.src.snapshot_id("data", "s22"),  # the SOURCE snapshot
        "incremental_base": "s21",
        "is_incremental": True,
        "include_intermediate": True,
        "rollback_to_base": True,  # the target's newest snapshot is the base
        "estimated_size": p.src.snapshots["data"][2]["used"],
        "priority": 2,  # lag 2 h is not more than interval + grace (1 h + 1 h)
        "sequence": 1,
        "source_ssh_hostname": "src.example",
        "source_ssh_user": "zfs",
        "source_ssh_port": 22,
        "pipeline": expected_pipeline,
        "sync_command": None,
        "reason": None,
    }
    assert re.fullmatch(r"[0-9a-f]{32}", action["action_id"])

    full = instructions(witness, p.dst, include_commands="true")
    command = full["actions"][0]["sync_command"]
    assert command == (
        "zfs rollback backup/data@s21 && ssh -n -o BatchMode=yes -p 22 zfs@src.example "
        "'zfs send -I tank/data@s21 tank/data@s22' | zfs receive -u backup/data"
    )
    assert {k: v for k, v in full["actions"][0].items() if k != "sync_command"} == {
        k: v for k, v in action.items() if k != "sync_command"
    }  # same ids: fetching the plan again gives the same action


def test_missing_dataset_gets_full_send_then_incremental(witness: Witness) -> None:
    p = pair(witness, dst_names=None, dst_root="backup/hostA")  # nothing under backup/hostA
    found = instructions(witness, p.dst, include_commands=True)
    assert found["action_count"] == 2
    full, incremental = found["actions"]
    assert set(full) == ACTION_FIELDS == set(incremental)
    assert kinds(found["actions"]) == [("full_send", 1, "s20"), ("incremental_send", 2, "s22")]
    assert full["snapshot_id"] == p.src.snapshot_id("data", "s20")
    assert (full["is_incremental"], full["incremental_base"], full["rollback_to_base"]) == (
        False, None, False)
    assert full["estimated_size"] == 5000  # a full stream: the snapshot's referenced bytes
    assert full["target_dataset"] == "backup/hostA/data" and full["target_pool"] == "backup"
    assert full["pipeline"] == [
        [*SSH, "zfs@src.example", "zfs send tank/data@s20"],
        ["zfs", "receive", "-u", "backup/hostA/data"],
    ]
    assert "parent dataset backup/hostA is missing" in full["reason"]
    assert full["sync_command"] is not None  # the agent creates the parent, the script can too
    assert incremental["snapshot_id"] == p.src.snapshot_id("data", "s22")
    assert (incremental["incremental_base"], incremental["rollback_to_base"]) == ("s20", True)
    assert incremental["priority"] == full["priority"] == 1  # 4 h behind: late
    assert incremental["reason"] is None


def test_source_without_ssh_hostname_gives_no_command(witness: Witness) -> None:
    witness.clock.now = NOW
    src = host(witness, "src", "tank")
    dst = host(witness, "dst", "backup")
    src.add("data", "s20", "s21")
    dst.add("data", "s20")
    src.report(), dst.report()
    group(witness, src, src, dst)
    action = instructions(witness, dst, include_commands=True)["actions"][0]
    assert action["sync_command"] is None and action["reason"] == "source has no ssh_hostname"
    assert action["source_ssh_hostname"] is None


def test_instructions_authorization(witness: Witness) -> None:
    p = pair(witness)
    url = f"{API}/sync/instructions/{p.dst.id}"
    assert witness.client.get(url).status_code == 401
    other = witness.client.get(url, headers=p.src.headers)
    assert other.status_code == 403 and other.json()["code"]
    assert witness.client.get(url, headers=p.dst.headers).json()["action_count"] == 1
    assert witness.client.get(url, headers=ADMIN).json()["action_count"] == 1
    # The hub's own key reads its own (empty) instructions: it is the source of everything.
    assert instructions(witness, p.src)["action_count"] == 0


def test_instructions_filter_by_group(witness: Witness) -> None:
    p = pair(witness, datasets=["data"])
    p.src.add("other", "s21")
    p.src.report()
    second = group(witness, p.src, p.src, p.dst, name="g2", datasets=["other"])
    both = instructions(witness, p.dst)
    assert sorted(both["sync_groups"]) == sorted([p.group, second])
    assert sorted(a["dataset"] for a in both["actions"]) == ["data", "other"]
    only = instructions(witness, p.dst, sync_group_id=second)
    assert only["sync_groups"] == [second]
    assert [(a["dataset"], a["action_type"]) for a in only["actions"]] == [("other", "full_send")]
    assert only["action_count"] == 1


def test_unknown_ids_are_404_on_every_sync_route(witness: Witness) -> None:
    p = pair(witness)
    missing = "00000000-0000-0000-0000-000000000000"
    calls = [
        ("GET", f"{API}/sync/instructions/{missing}", None),
        ("GET", f"{API}/sync/instructions/{p.dst.id}?sync_group_id={missing}", None),
        ("POST", f"{API}/sync/states", {"sync_group_id": missing, "system_id": p.dst.id,
                                         "status": "in_sync", "dataset": "data"}),
        ("POST", f"{API}/sync/states", {"sync_group_id": p.group, "system_id": p.dst.id,
                                         "status": "in_sync", "snapshot_id": missing}),
        ("GET", f"{API}/sync/states/{missing}", None),
        ("GET", f"{API}/sync/groups/{missing}/status", None),
        ("POST", f"{API}/sync/groups/{missing}/check", None),
        ("GET", f"{API}/conflicts/{missing}", None),
        ("POST", f"{API}/conflicts/{missing}/resolve", {"strategy": "ignore"}),
        ("GET", f"{API}/systems/{missing}/protected-snapshots", None),
    ]
    for method, url, body in calls:
        response = witness.client.request(method, url, json=body, headers=ADMIN)
        assert response.status_code == 404, (method, url, response.text)
        assert response.json()["code"].endswith("NOT_FOUND"), response.json()
        assert response.json()["detail"] and response.json()["hint"]



def test_unknown_system_in_a_state_report_is_404(witness: Witness) -> None:
    p = pair(witness)
    body = {"sync_group_id": p.group, "system_id": "00000000-0000-0000-0000-000000000000",
            "status": "in_sync", "dataset": "data"}
    response = witness.client.post(f"{API}/sync/states", json=body, headers=ADMIN)
    assert response.status_code == 404 and response.json()["code"] == "E_SYSTEM_NOT_FOUND"


def test_error_claim_is_kept_until_a_successful_sync(witness: Witness) -> None:
    p = pair(witness)
    action = instructions(witness, p.dst)["actions"][0]
    failed = report_state(witness, p.dst, p.group, "error", snapshot_id=action["snapshot_id"],
                          error_message="ssh: connect to host src.example port 22: refused")
    assert failed.json()["status"] == "error"
    assert "refused" in failed.json()["error_message"]
    p.src.add("data", "s26")
    p.src.report()
    kept = state(witness, p.group, p.dst)
    assert (kept["status"], kept["error_message"]) == ("error", failed.json()["error_message"])
    assert instructions(witness, p.dst)["action_count"] == 1  # the retry is handed out
    # The retry delivers the failed action's snapshot: a successful sync clears the error
    # even though the target is still behind the new s26.
    deliver(p.dst, p.src, "data", action)
    p.dst.report()
    cleared = state(witness, p.group, p.dst)
    assert (cleared["status"], cleared["error_message"]) == ("out_of_sync", None)


def test_error_identified_by_a_target_snapshot_is_kept(witness: Witness) -> None:
    """The guide's scripts may send one of the target's own snapshot ids with an error."""
    p = pair(witness)
    own = p.dst.snapshot_id("data", "s21")
    failed = report_state(witness, p.dst, p.group, "error", snapshot_id=own,
                          error_message="cannot receive: destination has been modified")
    assert failed.status_code == 200, failed.text
    got = state(witness, p.group, p.dst)
    assert (got["status"], got["error_message"]) == ("error", failed.json()["error_message"])
    assert instructions(witness, p.dst)["action_count"] == 1  # retried, not held by cadence


def test_error_without_a_message_as_in_the_guide(witness: Witness) -> None:
    p = pair(witness)
    action = instructions(witness, p.dst)["actions"][0]
    body = {"sync_group_id": p.group, "snapshot_id": action["snapshot_id"],
            "system_id": p.dst.id, "status": "error"}
    response = witness.client.post(f"{API}/sync/states", json=body, headers=p.dst.headers)
    assert (response.json()["status"], response.json()["error_message"]) == ("error", None)
    listed = witness.client.get(f"{API}/sync/states", params={"status": "error"}).json()
    assert [s["id"] for s in listed] == [state_id(p.group, "data", p.dst.id)]


def test_claimed_in_sync_contradicted_by_the_facts(witness: Witness) -> None:
    p = pair(witness)
    action = instructions(witness, p.dst)["actions"][0]
    claim = report_state(witness, p.dst, p.group, "in_sync", snapshot_id=action["snapshot_id"])
    got = claim.json()
    assert got["status"] == "out_of_sync"
    assert "reported in_sync" in got["reason"] and "s22" in got["reason"]
    assert state(witness, p.group, p.dst)["reason"] == got["reason"]
    by_dataset = report_state(witness, p.dst, p.group, "in_sync", dataset="data").json()
    assert by_dataset["status"] == "out_of_sync"
    assert "it lacks s22" in by_dataset["reason"]
    # The facts agree once the target reports the snapshot.
    deliver(p.dst, p.src, "data", action)
    p.dst.report()
    assert state(witness, p.group, p.dst)["status"] == "in_sync"


def test_states_list_filters_and_pages(witness: Witness) -> None:
    p = pair(witness)
    p.src.add("data/vm1", "s20")
    p.src.report()
    report_state(witness, p.dst, p.group, "syncing", dataset="data/vm1")
    listed = witness.client.get(f"{API}/sync/states", params={"sync_group_id": p.group})
    assert listed.headers["X-Total-Count"] == "2"
    assert {(s["dataset"], s["status"]) for s in listed.json()} == {
        ("data", "out_of_sync"), ("data/vm1", "syncing")}
    syncing = witness.client.get(f"{API}/sync/states", params={"status": "syncing"}).json()
    assert [s["dataset"] for s in syncing] == ["data/vm1"]
    mine = witness.client.get(f"{API}/sync/states", params={"system_id": p.src.id}).json()
    assert mine == []  # the hub is the target of nothing
    page = witness.client.get(f"{API}/sync/states", params={"limit": 1, "offset": 1})
    assert len(page.json()) == 1 and page.headers["X-Total-Count"] == "2"
    bad = witness.client.get(f"{API}/sync/states", params={"status": "sideways"})
    assert bad.status_code == 422


# -- group status, check, events ----------------------------------------------------------------


def test_group_status_counts_and_per_host_rows(witness: Witness) -> None:
    witness.clock.now = NOW
    src = host(witness, "src", "tank", ssh_hostname="src.example")
    near = host(witness, "near", "backup")
    far = host(witness, "far", "vault")
    src.add("data", "s20", "s21", "s22")
    src.add("data/vm1", "s20", "s21", "s22")
    near.add("data", "s20", "s21", "s22")
    near.add("data/vm1", "s20")
    far.add("elsewhere", "s01")  # a pool, but none of the group's datasets
    for member in (src, near, far):
        member.report()
    group_id = group(witness, src, src, near, far, sync_interval_seconds=1800)
    got = status(witness, group_id)
    assert {k: got[k] for k in (
        "sync_group_id", "name", "enabled", "total_states", "status_breakdown", "in_sync_count",
        "out_of_sync_count", "syncing_count", "conflict_count", "error_count", "last_updated",
    )} == {
        "sync_group_id": group_id, "name": "g1", "enabled": True, "total_states": 4,
        "status_breakdown": {"in_sync": 1, "out_of_sync": 3}, "in_sync_count": 1,
        "out_of_sync_count": 3, "syncing_count": 0, "conflict_count": 0, "error_count": 0,
        "last_updated": "2026-11-26T12:00:00Z",
    }
    hours = lambda n: n * 3600  # noqa: E731
    rows = {
        d["dataset"]: [(s["hostname"], s["latest_snapshot"], s["status"], s["lag_seconds"])
                       for s in d["systems"]]
        for d in got["datasets"]
    }
    assert rows == {
        "data": [
            ("src", "s22", "source", 0),
            ("far", None, "out_of_sync", hours(4)),  # lacks it: owes since s20
            ("near", "s22", "in_sync", 0),
        ],
        "data/vm1": [
            ("src", "s22", "source", 0),
            ("far", None, "out_of_sync", hours(4)),
            ("near", "s20", "out_of_sync", hours(3)),  # owes s21 (3 h ago) and s22
        ],
    }
    assert [d["source_system_id"] for d in got["datasets"]] == [src.id, src.id]
    late = {(d["dataset"], s["hostname"]): s["late"] for d in got["datasets"]
            for s in d["systems"]}
    # late: lag > 1800 + 3600 s
    assert late[("data/vm1", "near")] is True and late[("data", "near")] is False
    at(witness, NOW + HOUR, src, near, far)
    later = status(witness, group_id)
    assert later["last_updated"] == "2026-11-26T13:00:00Z"
    assert [s["lag_seconds"] for s in later["datasets"][1]["systems"]] == [
        0, hours(5), hours(4)]


def test_check_needs_admin_and_returns_the_status(witness: Witness) -> None:
    p = pair(witness)
    url = f"{API}/sync/groups/{p.group}/check"
    assert witness.client.post(url).status_code == 401
    assert witness.client.post(url, headers=p.dst.headers).status_code == 403
    checked = witness.client.post(url, headers=ADMIN)
    assert checked.status_code == 200, checked.text
    assert checked.json() == status(witness, p.group)
    assert checked.json()["out_of_sync_count"] == 1


def test_check_with_open_admin(make_witness: Any) -> None:
    witness = make_witness(open_admin=True)
    p = pair(witness)
    checked = witness.client.post(f"{API}/sync/groups/{p.group}/check")
    assert checked.status_code == 200 and checked.json()["sync_group_id"] == p.group


def test_check_records_what_time_alone_changed(witness: Witness) -> None:
    """Nothing was reported, but the source went offline: a check writes the change."""
    p = pair(witness)
    before = len(events(witness, "sync"))
    witness.clock.now = NOW + timedelta(seconds=301)  # nobody heartbeats
    checked = witness.client.post(f"{API}/sync/groups/{p.group}/check", headers=ADMIN).json()
    assert checked["datasets"][0]["systems"][1]["reason"] == "source offline"
    assert witness.client.get(f"{API}/sync/states/{state_id(p.group, 'data', p.dst.id)}").json()[
        "last_check"] == "2026-11-26T12:05:01Z"
    assert len(events(witness, "sync")) == before  # the status itself did not change


def test_state_changes_are_written_to_the_event_log_once(witness: Witness) -> None:
    p = pair(witness)
    action = instructions(witness, p.dst)["actions"][0]
    report_state(witness, p.dst, p.group, "syncing", snapshot_id=action["snapshot_id"])
    for _ in range(3):  # reading plans again writes nothing
        status(witness, p.group)
        instructions(witness, p.dst)
        witness.client.get(f"{API}/sync/states")
    deliver(p.dst, p.src, "data", action)
    p.dst.report()
    report_state(witness, p.dst, p.group, "in_sync", snapshot_id=action["snapshot_id"])
    found = [e for e in events(witness, "sync") if e["sync_group_id"] == p.group]
    assert [(e["type"], e["data"]["previous"]) for e in found] == [
        ("sync.out_of_sync", None),
        ("sync.syncing", "out_of_sync"),
        ("sync.in_sync", "syncing"),
    ]
    for event in found:
        assert event["system_id"] == p.dst.id
        assert event["data"]["state_id"] == state_id(p.group, "data", p.dst.id)
        assert event["data"]["dataset"] == "data"
    failed = report_state(witness, p.dst, p.group, "error", dataset="data",
                          error_message="pool is full")
    assert failed.json()["status"] == "in_sync"  # facts beat the claim: nothing is owed
    assert events(witness, "sync")[-1]["type"] == "sync.in_sync"


def test_error_event_carries_the_message(witness: Witness) -> None:
    p = pair(witness)
    report_state(witness, p.dst, p.group, "error", dataset="data", error_message="pool is full")
    last = events(witness, "sync.error")
    assert len(last) == 1 and "pool is full" in last[0]["message"]
    assert last[0]["severity"] == "error"


# -- cadence, offline hosts ---------------------------------------------------------------------


def test_cadence_after_a_successful_sync(witness: Witness) -> None:
    p = pair(witness, sync_interval_seconds=1800)
    action = instructions(witness, p.dst)["actions"][0]
    # The guide's order: the command ran, the script posts in_sync, the report follows.
    report_state(witness, p.dst, p.group, "in_sync", snapshot_id=action["snapshot_id"])
    at(witness, NOW + timedelta(seconds=10), p.src, p.dst)
    deliver(p.dst, p.src, "data", action)
    p.dst.report()
    synced = state(witness, p.group, p.dst)
    assert (synced["status"], synced["last_sync"]) == ("in_sync", "2026-11-26T12:00:00Z")
    p.src.add("data", "s23", when=NOW + timedelta(minutes=5))
    p.src.report()
    due = NOW + timedelta(seconds=1800)
    at(witness, due - timedelta(seconds=1), p.src, p.dst)
    held = state(witness, p.group, p.dst)
    assert instructions(witness, p.dst)["action_count"] == 0
    assert held["status"] == "out_of_sync"
    assert held["reason"] == f"next sync due at {due.isoformat()} (sync_interval_seconds)"
    for moment in (due, due + timedelta(seconds=1)):
        at(witness, moment, p.src, p.dst)
        found = instructions(witness, p.dst)["actions"]
        assert kinds(found) == [("incremental_send", 1, "s23")], moment
        assert found[0]["incremental_base"] == "s22"


def test_no_cadence_before_the_first_sync_or_after_a_failure(witness: Witness) -> None:
    p = pair(witness)
    assert instructions(witness, p.dst)["action_count"] == 1
    report_state(witness, p.dst, p.group, "error", dataset="data", error_message="timeout")
    assert instructions(witness, p.dst)["action_count"] == 1  # a failure is retried


@pytest.mark.parametrize("offline", ["src", "dst"])
def test_offline_host_gets_no_action(witness: Witness, offline: str) -> None:
    p = pair(witness)
    online = p.dst if offline == "src" else p.src
    reason = "source offline" if offline == "src" else "target offline"
    limit = NOW + timedelta(seconds=300)  # default timeout: online while age <= 300 s
    at(witness, limit, online)
    assert instructions(witness, p.dst)["action_count"] == 1
    at(witness, limit + timedelta(seconds=1), online)
    assert instructions(witness, p.dst)["action_count"] == 0
    got = state(witness, p.group, p.dst)
    assert (got["status"], got["reason"]) == ("out_of_sync", reason)
    rows = status(witness, p.group)["datasets"][0]["systems"]
    assert rows[1]["reason"] == reason
    getattr(p, offline).beat()  # back online
    assert instructions(witness, p.dst)["action_count"] == 1


def test_never_seen_source_is_offline(witness: Witness) -> None:
    witness.clock.now = NOW
    src_id, src_headers = witness.register("src", ssh_hostname="src.example")
    src = Host(witness, src_id, src_headers, "tank")  # registered, never heartbeat
    dst = host(witness, "dst", "backup")
    src.add("data", "s20")
    src.report()
    group_id = group(witness, src, src, dst)
    assert instructions(witness, dst)["action_count"] == 0
    assert state(witness, group_id, dst)["reason"] == "source offline"


def test_per_system_heartbeat_timeout(witness: Witness) -> None:
    witness.clock.now = NOW
    src = host(witness, "src", "tank", ssh_hostname="src.example",
               heartbeat_timeout_seconds=3600)
    dst = host(witness, "dst", "backup")
    src.add("data", "s20")
    src.report()
    group(witness, src, src, dst)
    at(witness, NOW + HOUR, dst)
    assert instructions(witness, dst)["action_count"] == 1
    at(witness, NOW + HOUR + timedelta(seconds=1), dst)
    assert instructions(witness, dst)["action_count"] == 0


# -- retention guard ----------------------------------------------------------------------------


def protected(witness: Witness, system: Host) -> list[tuple[str, str, str]]:
    response = witness.client.get(f"{API}/systems/{system.id}/protected-snapshots")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["system_id"] == system.id and body["count"] == len(body["snapshots"])
    return sorted((s["dataset"], s["snapshot"], s["reason"]) for s in body["snapshots"])


def test_protected_snapshots_base_and_owed(witness: Witness) -> None:
    p = pair(witness, dst_names=("s20",))
    assert protected(witness, p.src) == [
        ("tank/data", "s20", "base"), ("tank/data", "s21", "owed"), ("tank/data", "s22", "owed")]
    assert protected(witness, p.dst) == [("backup/data", "s20", "base")]
    body = witness.client.get(f"{API}/systems/{p.src.id}/protected-snapshots").json()
    owed = next(s for s in body["snapshots"] if s["snapshot"] == "s21")
    assert owed["snapshot_id"] == p.src.snapshot_id("data", "s21")
    assert (owed["sync_group_id"], owed["peer_system_id"]) == (p.group, p.dst.id)
    # Once in sync, only the new base is protected on both sides.
    p.dst.add("data", "s21", "s22")
    p.dst.report()
    assert protected(witness, p.src) == [("tank/data", "s22", "base")]
    assert protected(witness, p.dst) == [("backup/data", "s22", "base")]
    outsider = host(witness, "outsider", "tank")
    assert protected(witness, outsider) == []


def test_owed_protection_lapses_after_the_horizon(make_witness: Any) -> None:
    witness = make_witness(max_protect_seconds=int(2.5 * 3600))
    p = pair(witness, dst_names=("s20",))
    # s21 was created 3 h ago (beyond 2.5 h), s22 2 h ago; the base is always protected.
    assert protected(witness, p.src) == [("tank/data", "s20", "base"), ("tank/data", "s22", "owed")]
    at(witness, NOW + HOUR, p.src, p.dst)
    assert protected(witness, p.src) == [("tank/data", "s20", "base")]


def test_target_lacking_the_dataset_protects_what_it_is_owed(witness: Witness) -> None:
    p = pair(witness, dst_names=None)
    assert protected(witness, p.src) == [
        ("tank/data", "s20", "owed"), ("tank/data", "s21", "owed"), ("tank/data", "s22", "owed")]
    assert protected(witness, p.dst) == []


# -- names cannot break out of quoting ----------------------------------------------------------

BAD_NAMES = ["s'1", 's"1', "s;1", "s$(reboot)", "s`id`", "s|1", "s&1", "s\n1", "s%1", "-s1"]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_hostile_names_never_reach_an_instruction(witness: Witness, bad: str) -> None:
    p = pair(witness)
    hostile = [
        {"name": bad, "pool": "tank", "dataset": "tank/data", "timestamp": iso(NOW)},
        {"name": "s30", "pool": "tank", "dataset": f"tank/{bad}", "timestamp": iso(NOW)},
    ]
    for item in hostile:
        single = witness.client.post(f"{API}/snapshots", json={**item, "system_id": p.src.id},
                                     headers=p.src.headers)
        assert single.status_code == 422, (item, single.text)
        full = witness.client.put(f"{API}/systems/{p.src.id}/snapshots",
                                  json={"snapshots": [*p.src.snapshots["data"], item]},
                                  headers=p.src.headers)
        assert full.status_code == 422, (item, full.text)
    third = host(witness, "third", "backup")
    bad_root = witness.client.post(f"{API}/sync-groups/{p.group}/systems",
                                   json={"system_id": third.id, "root": f"backup/{bad}"},
                                   headers=ADMIN)
    assert bad_root.status_code == 422, bad_root.text
    for field_name in ("ssh_hostname", "ssh_user", "zfs_path"):
        update = witness.client.put(f"{API}/systems/{p.src.id}", json={field_name: bad},
                                    headers=p.src.headers)
        assert update.status_code == 422, (field_name, update.text)
    found = instructions(witness, p.dst, include_commands=True)
    assert kinds(found["actions"]) == [("incremental_send", 1, "s22")]
    assert bad not in str(found)


LEGAL = [
    # (source pool, target root, logical dataset, snapshot names)
    ("tank", "backup", "my data:v1.2-x_y", ["auto snap:2026-11-26_10.00-a", "b 2"]),
    ("tank 2:a.b-c_d", "bk-1_a.b:c d/host A", "vm disks/disk 1:a.b-c_d", ["s 1", "s:2.x-y_z"]),
]


@pytest.mark.parametrize(("pool", "root", "logical", "names"), LEGAL)
def test_legal_names_stay_one_pipeline_end_to_end(
    witness: Witness, pool: str, root: str, logical: str, names: list[str]
) -> None:
    witness.clock.now = NOW
    src = host(witness, "src", pool, ssh_hostname="src.example", ssh_user="zfs")
    dst = host(witness, "dst", root)
    for index, name in enumerate(names):
        src.add(logical, name, when=NOW - (len(names) - index) * HOUR)
    src.report()
    dst.add("placeholder", "s01")  # the target's pool exists
    dst.report()
    group_id = group(witness, src, src, dst)
    found = instructions(witness, dst, include_commands=True)
    assert [a["action_type"] for a in found["actions"]] == ["full_send", "incremental_send"]
    for action in found["actions"]:
        assert action["dataset"] == logical
        assert action["source_dataset"] == f"{pool}/{logical}"
        assert action["target_dataset"] == f"{root}/{logical}"
        pipeline = action["pipeline"]
        assert stages(action["sync_command"]) == pipeline
        joined = list(pipeline[0])
        separators = ["&&"] * (len(pipeline) - 2) + ["|"]
        for separator, stage in zip(separators, pipeline[1:], strict=True):
            joined += [separator, *stage]
        # One pipeline: no word was split or merged, no separator hides inside a word.
        assert shlex.split(action["sync_command"]) == joined
        ssh_stage = pipeline[-2]
        assert ssh_stage[:len(SSH)] == SSH and ssh_stage[len(SSH)] == "zfs@src.example"
        remote = shlex.split(ssh_stage[-1])  # what the source's shell runs
        assert remote[:2] == ["zfs", "send"]
        assert remote[-1] == f"{pool}/{logical}@{action['snapshot_name']}"
        if action["is_incremental"]:
            assert remote[2:4] == ["-I", f"{pool}/{logical}@{action['incremental_base']}"]
            rollback = ["zfs", "rollback", f"{root}/{logical}@{action['incremental_base']}"]
            assert pipeline[0] == rollback
        assert pipeline[-1] == ["zfs", "receive", "-u", f"{root}/{logical}"]
    # ... and the report of the result identifies the edge.
    first = found["actions"][0]
    dst.add(logical, names[0], when=NOW - len(names) * HOUR)
    dst.report()
    claimed = report_state(witness, dst, group_id, "in_sync", snapshot_id=first["snapshot_id"])
    assert claimed.status_code == 200 and claimed.json()["dataset"] == logical


# -- the guide's "Sync Execution Automation" over HTTP ------------------------------------------


def run_guide_script(witness: Witness, target: Host, source: Host) -> int:
    """What /usr/local/bin/zfs-sync-execute.sh does, with `eval` pretended to succeed."""
    plan = instructions(witness, target, include_commands="true")
    if (plan.get("action_count") or 0) == 0:
        return 0
    for action in plan["actions"]:  # jq -r '.actions[] | @json'
        command, snapshot_id = action.get("sync_command"), action.get("snapshot_id")
        group_id, dataset = action["sync_group_id"], action["dataset"]
        assert command and snapshot_id and group_id and dataset, action
        deliver(target, source, dataset, action)  # eval "$SYNC_COMMAND" succeeded ...
        target.report()  # ... and the host's snapshot cron reports what it now holds
        body = {"sync_group_id": group_id, "snapshot_id": snapshot_id,
                "system_id": target.id, "status": "in_sync"}
        response = witness.client.post(f"{API}/sync/states", json=body, headers=target.headers)
        assert response.status_code == 200, response.text
    return int(plan["action_count"])


def test_guide_sync_execution_automation(witness: Witness) -> None:
    p = pair(witness, dst_names=None)
    p.src.add("data/vm1", "s20", "s21")
    p.src.report()
    assert run_guide_script(witness, p.dst, p.src) == 4  # full + incremental for each dataset
    assert instructions(witness, p.dst)["action_count"] == 0
    got = status(witness, p.group)
    assert got["status_breakdown"] == {"in_sync": 2}
    for dataset in ("data", "data/vm1"):
        one = state(witness, p.group, p.dst, dataset)
        assert (one["status"], one["lag_seconds"], one["reason"]) == ("in_sync", 0, None)
        assert one["last_sync"] == "2026-11-26T12:00:00Z"
    assert [s["name"] for s in p.dst.snapshots["data"]] == ["s20", "s21", "s22"]
    # An hour later the source has a new snapshot: one incremental, then in sync again.
    at(witness, NOW + HOUR, p.src, p.dst)
    p.src.add("data", "s25")
    p.src.report()
    again = instructions(witness, p.dst, include_commands=True)
    assert kinds(again["actions"]) == [("incremental_send", 1, "s25")]
    assert run_guide_script(witness, p.dst, p.src) == 1
    assert instructions(witness, p.dst)["action_count"] == 0
    assert status(witness, p.group)["in_sync_count"] == 2
    assert state(witness, p.group, p.dst)["last_sync"] == "2026-11-26T13:00:00Z"
