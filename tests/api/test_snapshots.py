"""Snapshot reports: single, batch and full state; the guide's scripts; bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.conftest import ADMIN, Witness
from tests.live import live_witness
from zfs_sync.storage.models import Dataset, Snapshot

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
SNAPSHOTS = "/api/v1/snapshots"


def snap(system_id: str | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "daily-1", "pool": "tank", "dataset": "tank/data",
        "timestamp": "2026-11-25T00:00:00Z", **fields,
    }
    if system_id is not None:
        body["system_id"] = system_id
    return body


def rows(witness: Witness, system_id: str | None = None) -> list[Snapshot]:
    with witness.db.read() as session:
        query = select(Snapshot).order_by(Snapshot.dataset, Snapshot.name)
        if system_id is not None:
            query = query.where(Snapshot.system_id == system_id)
        return list(session.scalars(query))


def count(witness: Witness) -> int:
    with witness.db.read() as session:
        return session.scalar(select(func.count()).select_from(Snapshot)) or 0


def put(witness: Witness, system_id: str, headers: dict[str, str], **body: Any) -> Any:
    return witness.client.put(f"/api/v1/systems/{system_id}/snapshots", json=body, headers=headers)


# -- POST /snapshots ------------------------------------------------------------------------


def test_post_creates_then_updates_and_never_duplicates(witness: Witness) -> None:
    system_id, headers = witness.register("alpha")
    first = witness.client.post(SNAPSHOTS, json=snap(system_id, size=100), headers=headers)
    assert first.status_code == 201, first.text
    again = witness.client.post(SNAPSHOTS, json=snap(system_id, size=100), headers=headers)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    changed = witness.client.post(SNAPSHOTS, json=snap(system_id, size=200), headers=headers)
    assert changed.status_code == 200 and changed.json()["size"] == 200
    assert count(witness) == 1
    body = changed.json()
    assert (body["pool"], body["dataset"], body["name"]) == ("tank", "tank/data", "daily-1")
    assert body["timestamp"] == "2026-11-25T00:00:00Z"
    assert body["logical_dataset"] == "data"  # root: its only pool


def test_name_dataset_and_pool_forms(witness: Witness) -> None:
    system_id, headers = witness.register("alpha")
    cases = [
        ({"name": "tank/a@s1", "pool": None, "dataset": None}, ("tank", "tank/a", "s1")),
        ({"name": "tank/b@s1", "pool": "tank", "dataset": "tank/b"}, ("tank", "tank/b", "s1")),
        ({"name": "s1", "pool": "tank", "dataset": "c"}, ("tank", "tank/c", "s1")),
        ({"name": "s1", "dataset": "tank/d/e"}, ("tank", "tank/d/e", "s1")),
        ({"name": "s1", "pool": "rpool@s1", "dataset": "rpool"}, ("rpool", "rpool", "s1")),
        ({"name": "my snap", "dataset": "tank/with space"}, ("tank", "tank/with space", "my snap")),
    ]
    for fields, expected in cases:
        body = {k: v for k, v in snap(system_id, **fields).items() if v is not None}
        response = witness.client.post(SNAPSHOTS, json=body, headers=headers)
        assert response.status_code == 201, (fields, response.text)
        got = response.json()
        assert (got["pool"], got["dataset"], got["name"]) == expected


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"pool": "tank", "dataset": "other/data"}, "dataset"),  # pool contradicts dataset
        ({"pool": "backup", "name": "tank/data@s1", "dataset": None}, "name"),
        ({"name": "tank/other@s1"}, "dataset"),  # name says tank/other, dataset tank/data
        ({"dataset": None}, "dataset"),  # no dataset and a short name
        ({"name": None}, "name"),
        ({"timestamp": None}, "timestamp"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"size": 10, "used": 20}, "used"),
        ({"size": -1}, "size"),
        ({"size": "lots"}, "size"),
        ({"guid": str(2**64)}, "guid"),
        ({"guid": "-1"}, "guid"),
        ({"createtxg": -5}, "createtxg"),
        ({"dataset": 5}, "dataset"),
        ({"pool": "mirror"}, "pool"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_fields_are_422_naming_the_field(
    witness: Witness, fields: dict[str, Any], field: str
) -> None:
    system_id, headers = witness.register("alpha")
    body = {k: v for k, v in snap(system_id, **fields).items() if v is not None}
    response = witness.client.post(SNAPSHOTS, json=body, headers=headers)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert errors[0]["loc"] == ["body", field], errors
    assert count(witness) == 0


METACHARACTERS = [";", "$", "`", "|", "&", "'", '"', "\n", "$(reboot)", "%"]


@pytest.mark.parametrize("char", METACHARACTERS)
@pytest.mark.parametrize("field", ["name", "pool", "dataset"])
def test_shell_metacharacters_are_rejected_everywhere(
    witness: Witness, field: str, char: str
) -> None:
    system_id, headers = witness.register("alpha")
    value = {"name": f"s{char}1", "pool": f"tank{char}", "dataset": f"tank/da{char}ta"}[field]
    bad = snap(system_id, **{field: value})
    single = witness.client.post(SNAPSHOTS, json=bad, headers=headers)
    assert single.status_code == 422 and single.json()["errors"][0]["loc"] == ["body", field]
    batch = witness.client.post(
        f"{SNAPSHOTS}/batch", json={"snapshots": [snap(system_id), bad]}, headers=headers
    )
    assert batch.status_code == 422
    assert batch.json()["errors"][0]["loc"] == ["body", "snapshots", 1, field]
    full = put(witness, system_id, headers, snapshots=[snap(), {**bad, "system_id": system_id}])
    assert full.status_code == 422
    assert full.json()["errors"][0]["loc"] == ["body", "snapshots", 1, field]
    assert count(witness) == 0


def test_sizes_timestamps_and_synonyms(witness: Witness) -> None:
    system_id, headers = witness.register("alpha")
    cases = [
        ({"used": 1024}, 1024, "2026-11-25T00:00:00Z"),
        ({"size": 2.14748e09}, 2147480000, "2026-11-25T00:00:00Z"),
        ({"size": "88K", "used": "88K"}, 90112, "2026-11-25T00:00:00Z"),
        ({"used": "1.5G", "timestamp": 1795564800}, 1610612736, "2026-11-25T00:00:00Z"),
        ({"size": "-", "timestamp": "2026-11-25T01:00:00+01:00"}, None, "2026-11-25T00:00:00Z"),
        ({"timestamp": "2026-11-25T00:00:00"}, None, "2026-11-25T00:00:00Z"),  # naive = UTC
        ({"timestamp": "Wed Nov 25 00:00 2026"}, None, "2026-11-25T00:00:00Z"),
        ({"timestamp": "Tue Nov  3 09:05 2026"}, None, "2026-11-03T09:05:00Z"),
    ]
    for index, (fields, size, timestamp) in enumerate(cases):
        body = snap(system_id, name=f"s{index}", **fields)
        response = witness.client.post(SNAPSHOTS, json=body, headers=headers)
        assert response.status_code == 201, (fields, response.text)
        assert (response.json()["size"], response.json()["timestamp"]) == (size, timestamp)


def test_guid_above_2_63_round_trips_as_a_string(witness: Witness) -> None:
    system_id, headers = witness.register("alpha")
    for name, guid in (("a", 2**64 - 1), ("b", 2**63), ("c", 2**63 - 1), ("d", 0)):
        for sent in (guid, str(guid)):
            response = witness.client.post(
                SNAPSHOTS, json=snap(system_id, name=name, guid=sent), headers=headers
            )
            assert response.status_code in (200, 201) and response.json()["guid"] == str(guid)
        listed = witness.client.get(f"{SNAPSHOTS}?name={name}").json()
        assert listed[0]["guid"] == str(guid)
    with witness.db.read() as session:
        stored = {s.name: s.guid for s in session.scalars(select(Snapshot))}
    assert stored == {"a": 2**64 - 1, "b": 2**63, "c": 2**63 - 1, "d": 0}


def test_a_report_without_a_value_keeps_the_known_one(witness: Witness) -> None:
    """The guide's cron script sends no guid; it must not erase the agent's."""
    system_id, headers = witness.register("alpha")
    put(witness, system_id, headers, snapshots=[snap(guid="77", createtxg=9, referenced=5)])
    response = witness.client.post(SNAPSHOTS, json=snap(system_id, size=10), headers=headers)
    assert response.status_code == 200
    got = response.json()
    assert (got["guid"], got["createtxg"], got["referenced"], got["size"]) == ("77", 9, 5, 10)


def test_writes_need_the_systems_own_key(witness: Witness) -> None:
    alpha, _ = witness.register("alpha")
    _, beta_headers = witness.register("beta")
    assert witness.client.post(SNAPSHOTS, json=snap(alpha)).status_code == 401
    other = witness.client.post(SNAPSHOTS, json=snap(alpha), headers=beta_headers)
    assert other.status_code == 403 and other.json()["code"] == "E_FORBIDDEN_SYSTEM"
    assert put(witness, alpha, beta_headers, snapshots=[snap()]).status_code == 403
    assert put(witness, alpha, {}, snapshots=[snap()]).status_code == 401
    assert witness.client.post(SNAPSHOTS, json=snap(alpha), headers=ADMIN).status_code == 201
    assert count(witness) == 1


def test_unknown_system_is_404_and_stores_nothing(witness: Witness) -> None:
    missing = witness.client.post(SNAPSHOTS, json=snap("nope"), headers=ADMIN)
    assert missing.status_code == 404 and missing.json()["code"] == "E_SYSTEM_NOT_FOUND"
    assert put(witness, "nope", ADMIN, snapshots=[snap()]).status_code == 404
    assert count(witness) == 0


def test_delete_snapshot(witness: Witness) -> None:
    alpha, alpha_headers = witness.register("alpha")
    _, beta_headers = witness.register("beta")
    created = witness.client.post(SNAPSHOTS, json=snap(alpha), headers=alpha_headers)
    url = f"{SNAPSHOTS}/{created.json()['id']}"
    assert witness.client.delete(url).status_code == 401
    assert witness.client.delete(url, headers=beta_headers).status_code == 403
    assert witness.client.delete(url, headers=alpha_headers).status_code == 204
    assert count(witness) == 0
    again = witness.client.delete(url, headers=alpha_headers)
    assert again.status_code == 404 and again.json()["code"] == "E_SNAPSHOT_NOT_FOUND"


# -- POST /snapshots/batch ------------------------------------------------------------------


def test_batch_upserts_and_accepts_a_bare_array(witness: Witness) -> None:
    system_id, headers = witness.register("alpha")
    items = [snap(system_id, name=f"s{i}", size=i) for i in range(3)]
    first = witness.client.post(f"{SNAPSHOTS}/batch", json={"snapshots": items}, headers=headers)
    assert first.json() == {"created": 3, "updated": 0, "count": 3}
    items[0]["size"] = 99
    bare = witness.client.post(f"{SNAPSHOTS}/batch", json=[*items, snap(system_id)],
                               headers=headers)
    assert bare.status_code == 200, bare.text
    assert bare.json() == {"created": 1, "updated": 1, "count": 4}
    assert count(witness) == 4
    empty = witness.client.post(f"{SNAPSHOTS}/batch", json={"snapshots": []}, headers=headers)
    assert empty.json() == {"created": 0, "updated": 0, "count": 0}


def test_batch_is_all_or_nothing(witness: Witness) -> None:
    alpha, alpha_headers = witness.register("alpha")
    beta, _ = witness.register("beta")
    good = [snap(alpha, name=f"s{i}") for i in range(5)]
    bad_name = [*good[:3], snap(alpha, name="s;3"), good[4]]
    response = witness.client.post(
        f"{SNAPSHOTS}/batch", json={"snapshots": bad_name}, headers=alpha_headers
    )
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["errors"]] == [["body", "snapshots", 3, "name"]]
    assert "snapshots.3.name" in response.json()["detail"]
    two_bad = [snap(alpha, name="s;0"), snap(alpha, timestamp="never")]
    locs = [e["loc"] for e in witness.client.post(
        f"{SNAPSHOTS}/batch", json=two_bad, headers=alpha_headers).json()["errors"]]
    assert locs == [["body", "snapshots", 0, "name"], ["body", "snapshots", 1, "timestamp"]]
    foreign = witness.client.post(
        f"{SNAPSHOTS}/batch", json=[*good, snap(beta, name="x")], headers=alpha_headers
    )
    assert foreign.status_code == 403
    unknown = witness.client.post(
        f"{SNAPSHOTS}/batch", json=[*good, snap("nope", name="x")], headers=ADMIN
    )
    assert unknown.status_code == 404
    not_an_object = witness.client.post(
        f"{SNAPSHOTS}/batch", json=[*good, "tank/data@s9"], headers=alpha_headers
    )
    assert not_an_object.status_code == 422
    assert not_an_object.json()["errors"][0]["loc"] == ["body", "snapshots", 5]
    assert count(witness) == 0


def test_admin_batch_spans_systems(witness: Witness) -> None:
    alpha, _ = witness.register("alpha")
    beta, _ = witness.register("beta")
    items = [snap(alpha), snap(beta), snap(beta, name="daily-2")]
    response = witness.client.post(f"{SNAPSHOTS}/batch", json=items, headers=ADMIN)
    assert response.json() == {"created": 3, "updated": 0, "count": 3}
    assert (len(rows(witness, alpha)), len(rows(witness, beta))) == (1, 2)


# -- PUT /systems/{id}/snapshots --------------------------------------------------------------


def test_full_report_inserts_updates_and_deletes_only_that_system(witness: Witness) -> None:
    alpha, alpha_headers = witness.register("alpha")
    beta, beta_headers = witness.register("beta")
    state = [snap(name=f"s{i}", guid=str(i + 1), used=i) for i in range(4)]
    first = put(witness, alpha, alpha_headers, snapshots=state)
    assert first.json() == {"created": 4, "updated": 0, "deleted": 0, "unchanged": 0}
    assert put(witness, beta, beta_headers, snapshots=state).status_code == 200  # same names
    before = {s.name: s for s in rows(witness, alpha)}
    again = put(witness, alpha, alpha_headers, snapshots=state)
    assert again.json() == {"created": 0, "updated": 0, "deleted": 0, "unchanged": 4}
    state = [*state[:1], {**state[1], "used": 50}, *state[3:], snap(name="s9", guid="10")]
    witness.clock.now = NOW
    changed = put(witness, alpha, alpha_headers, snapshots=state)
    assert changed.json() == {"created": 1, "updated": 1, "deleted": 1, "unchanged": 2}
    after = {s.name: s for s in rows(witness, alpha)}
    assert sorted(after) == ["s0", "s1", "s3", "s9"]
    assert after["s1"].size == 50 and after["s1"].updated_at == NOW
    assert after["s0"].id == before["s0"].id and after["s0"].updated_at == before["s0"].updated_at
    assert sorted(s.name for s in rows(witness, beta)) == ["s0", "s1", "s2", "s3"]
    assert put(witness, alpha, alpha_headers, snapshots=[]).json()["deleted"] == 4
    assert rows(witness, alpha) == [] and len(rows(witness, beta)) == 4


def test_full_report_within_scope(witness: Witness) -> None:
    system_id, headers = witness.register("alpha")
    state = [snap(dataset=ds, name=n) for ds in ("tank/a", "tank/b", "tank/c") for n in ("x", "y")]
    put(witness, system_id, headers, snapshots=state)
    scoped = put(
        witness, system_id, headers, scope=["tank/a", "tank/b"],
        snapshots=[snap(dataset="tank/a", name="x"), snap(dataset="tank/a", name="z")],
    )
    assert scoped.json() == {"created": 1, "updated": 0, "deleted": 3, "unchanged": 1}
    left = sorted(f"{s.dataset}@{s.name}" for s in rows(witness, system_id))
    assert left == ["tank/a@x", "tank/a@z", "tank/c@x", "tank/c@y"]
    outside = put(witness, system_id, headers, scope=["tank/a"],
                  snapshots=[snap(dataset="tank/a", name="x"), snap(dataset="tank/c", name="x")])
    assert outside.status_code == 422
    assert outside.json()["errors"][0]["loc"] == ["body", "snapshots", 1, "dataset"]
    assert len(rows(witness, system_id)) == 4


def test_full_report_items_belong_to_the_path_system(witness: Witness) -> None:
    alpha, alpha_headers = witness.register("alpha")
    beta, _ = witness.register("beta")
    ok = put(witness, alpha, alpha_headers, snapshots=[snap(alpha)])
    assert ok.status_code == 200
    wrong = put(witness, alpha, ADMIN, snapshots=[snap(alpha), snap(beta, name="x")])
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["loc"] == ["body", "snapshots", 1, "system_id"]
    assert rows(witness, beta) == []


def datasets(
    witness: Witness, system_id: str, reported: bool = True
) -> dict[str, tuple[bool, str | None]]:
    """The dataset records the host reported (``reported=False``: those only implied by
    snapshots, kept so that the planner's summaries cover every dataset)."""
    with witness.db.read() as session:
        found = session.scalars(
            select(Dataset).where(Dataset.system_id == system_id, Dataset.reported.is_(reported))
        )
        return {d.name: (d.encryption, d.receive_resume_token) for d in found}


def test_full_report_replaces_dataset_records(witness: Witness) -> None:
    system_id, headers = witness.register("alpha")
    put(witness, system_id, headers, snapshots=[], datasets=[
        {"name": "tank/a", "encryption": True}, {"name": "tank/b"}, {"name": "tank/empty"}])
    assert datasets(witness, system_id) == {
        "tank/a": (True, None), "tank/b": (False, None), "tank/empty": (False, None)}
    put(witness, system_id, headers, snapshots=[snap()])  # no datasets: records kept
    assert len(datasets(witness, system_id)) == 3
    put(witness, system_id, headers, scope=["tank/b", "tank/empty"],
        datasets=[{"name": "tank/b", "receive_resume_token": "1-abc"}])
    assert datasets(witness, system_id) == {"tank/a": (True, None), "tank/b": (False, "1-abc")}
    outside = put(witness, system_id, headers, scope=["tank/b"], datasets=[{"name": "tank/a"}])
    assert outside.json()["errors"][0]["loc"] == ["body", "datasets", 0, "name"]
    bad = put(witness, system_id, headers, datasets=[{"name": "tank/a;rm"}])
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"][:3] == ["body", "datasets", 0]
    put(witness, system_id, headers, datasets=[])
    assert datasets(witness, system_id) == {}
    assert len(rows(witness, system_id)) == 1  # no "snapshots": the snapshots were kept
    assert datasets(witness, system_id, reported=False) == {"tank/data": (False, None)}
    nothing = put(witness, system_id, headers)
    assert nothing.json() == {"created": 0, "updated": 0, "deleted": 0, "unchanged": 0}
    assert len(rows(witness, system_id)) == 1


def test_full_report_with_a_snapshot_twice_keeps_the_last(witness: Witness) -> None:
    system_id, headers = witness.register("alpha")
    response = put(witness, system_id, headers, snapshots=[snap(used=1), snap(used=2)])
    assert response.status_code == 200
    assert [s.size for s in rows(witness)] == [2]


# -- the operations guide's scripts -----------------------------------------------------------


def test_python_automation_example_body(witness: Witness) -> None:
    """The guide's Python example: zfs list's creation strings, sizes from its parse_size."""
    system_id, headers = witness.register("alpha")

    def parse_size(used: str) -> int:  # the guide never defines it; any sensible one
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        return int(float(used[:-1]) * units[used[-1]]) if used[-1] in units else int(used)

    stdout = ("tank/data@daily-1\tWed Nov 25 00:00 2026\t88K\n"
              "tank/data@daily-2\tThu Nov 26 00:00 2026\t1.5G\n"
              "rpool@install\tTue Nov  3 09:05 2026\t0\n")
    snapshots = []
    for line in stdout.strip().split("\n"):
        name, creation, used = line.split("\t")
        snapshots.append({
            "name": name.split("@")[1], "pool": name.split("/")[0],
            "dataset": name.split("@")[0], "timestamp": creation,
            "size": parse_size(used), "system_id": system_id,
        })
    response = witness.client.post(
        f"{SNAPSHOTS}/batch", headers={**headers, "Content-Type": "application/json"},
        content=json.dumps({"snapshots": snapshots}),
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"created": 3, "updated": 0, "count": 3}
    stored = {f"{s.dataset}@{s.name}": (s.pool, s.timestamp, s.size) for s in rows(witness)}
    assert stored == {
        "rpool@install": ("rpool", datetime(2026, 11, 3, 9, 5, tzinfo=timezone.utc), 0),
        "tank/data@daily-1": ("tank", datetime(2026, 11, 25, tzinfo=timezone.utc), 90112),
        "tank/data@daily-2": ("tank", datetime(2026, 11, 26, tzinfo=timezone.utc), 1610612736),
    }
    again = witness.client.post(f"{SNAPSHOTS}/batch", json={"snapshots": snapshots},
                                headers=headers)
    assert again.json() == {"created": 0, "updated": 0, "count": 3}
    assert count(witness) == 3


def test_cron_script_bodies_as_curl_sends_them(witness: Witness) -> None:
    """The JSON text the guide's cron script builds, for a root dataset under mawk."""
    system_id, headers = witness.register("alpha")
    for pool, dataset, name, size, timestamp in (
        ("rpool@install", "rpool", "install", "2.14748e+09", "2026-11-26T19:22:00+01:00"),
        ("tank", "tank/data", "daily", "90112", "2026-11-26T19:22:00Z"),
    ):
        text = f"""{{
        "name": "{name}",
        "pool": "{pool}",
        "dataset": "{dataset}",
        "timestamp": "{timestamp}",
        "size": {size},
        "system_id": "{system_id}"
      }}"""
        for status in (201, 200):
            response = witness.client.post(
                SNAPSHOTS, content=text, headers={**headers, "Content-Type": "application/json"}
            )
            assert response.status_code == status, response.text
    stored = {s.dataset: (s.pool, s.name, s.size, s.timestamp) for s in rows(witness)}
    assert stored == {
        "rpool": ("rpool", "install", 2147480000, datetime(2026, 11, 26, 18, 22, tzinfo=UTC)),
        "tank/data": ("tank", "daily", 90112, datetime(2026, 11, 26, 19, 22, tzinfo=UTC)),
    }


# The guide's "Cron Job for Snapshot Reporting" script, verbatim but for its three settings.
CRON_SCRIPT = r"""#!/bin/bash

# Configuration
API_URL="$URL"
API_KEY="$KEY"
SYSTEM_ID="$SYSTEM"

# Get all snapshots from this system
zfs list -t snapshot -H -o name,creation,used,referenced | while IFS=$'\t' read -r name creation used referenced; do
    # Extract pool, dataset, and snapshot name
    pool=$(echo "$name" | cut -d'/' -f1)
    dataset=$(echo "$name" | cut -d'@' -f1)
    snap_name=$(echo "$name" | cut -d'@' -f2)

    # Convert creation time to ISO format
    timestamp=$(date -d "$creation" -Iseconds 2>/dev/null || date -j -f "%a %b %d %H:%M %Y" "$creation" "+%Y-%m-%dT%H:%M:%SZ" 2>/dev/null || echo "$(date -Iseconds)")

    # Convert size to bytes (used field is in human-readable format)
    size_bytes=$(echo "$used" | awk '{
        if ($0 ~ /[0-9]+K/) {print int($0) * 1024}
        else if ($0 ~ /[0-9]+M/) {print int($0) * 1024 * 1024}
        else if ($0 ~ /[0-9]+G/) {print int($0) * 1024 * 1024 * 1024}
        else if ($0 ~ /[0-9]+T/) {print int($0) * 1024 * 1024 * 1024 * 1024}
        else {print int($0)}
    }')

    # Report snapshot
    curl -s -X POST "$API_URL/snapshots" \
      -H "X-API-Key: $API_KEY" \
      -H "Content-Type: application/json" \
      -d "{
        \"name\": \"$snap_name\",
        \"pool\": \"$pool\",
        \"dataset\": \"$dataset\",
        \"timestamp\": \"$timestamp\",
        \"size\": $size_bytes,
        \"system_id\": \"$SYSTEM_ID\"
      }" > /dev/null
done

# Send heartbeat
curl -s -X POST "$API_URL/systems/$SYSTEM_ID/heartbeat" \
  -H "X-API-Key: $API_KEY" > /dev/null

echo "$(date): Snapshot report completed"
"""

# What `zfs list -t snapshot -H -o name,creation,used,referenced` prints on the host.
ZFS_LIST = (
    "rpool@install\tThu Nov 26 19:22 2026\t2G\t1.5G\n"
    "tank/data@daily-1\tWed Nov 25 00:00 2026\t88K\t1M\n"
    "tank/data/vm 1@hourly\tWed Nov 25 23:05 2026\t0B\t12K\n"
)


def test_cron_script_runs_verbatim_against_a_live_witness(
    tmp_path: Path, database_url: str
) -> None:
    """The whole script, under mawk (whose int() prints 2G as 2.14748e+09) in Berlin time."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    zfs = bin_dir / "zfs"
    zfs.write_text(f"#!/bin/sh\nprintf '{ZFS_LIST}'\n")
    zfs.chmod(0o755)
    (bin_dir / "awk").symlink_to(shutil.which("mawk") or "/usr/bin/mawk")
    data_dir = tmp_path / "witness"
    data_dir.mkdir()
    with live_witness(data_dir, database_url) as url:
        token = (data_dir / "admin-token").read_text().strip()
        registered = httpx.post(f"{url}/api/v1/systems", json={"hostname": "host1"},
                                headers={"X-API-Key": token}).json()
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "TZ": "Europe/Berlin", "URL": f"{url}/api/v1",
               "KEY": registered["api_key"], "SYSTEM": registered["id"]}
        for _ in range(2):  # re-reporting never duplicates
            result = subprocess.run(["bash", "-c", CRON_SCRIPT], env=env, capture_output=True,
                                    text=True, timeout=60)
            assert result.returncode == 0, result.stderr
        listed = httpx.get(f"{url}/api/v1/snapshots?system_id={registered['id']}").json()
        health = httpx.get(f"{url}/api/v1/systems/{registered['id']}/health").json()
    got = {f"{s['dataset']}@{s['name']}": (s["pool"], s["timestamp"], s["size"]) for s in listed}
    assert got == {
        "rpool@install": ("rpool", "2026-11-26T18:22:00Z", 2147480000),
        "tank/data@daily-1": ("tank", "2026-11-24T23:00:00Z", 90112),
        "tank/data/vm 1@hourly": ("tank", "2026-11-25T22:05:00Z", 0),
    }
    assert health["status"] == "online"
