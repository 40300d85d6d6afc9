"""`zfs-sync conflicts list|resolve` against a live witness, on a conflict the planner found.

The fleet is built over HTTP with the helpers of ``tests/api/test_sync.py``: a directional
group src -> dst where dst has its own snapshots after the common base (``target_diverged``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from click.testing import CliRunner

from tests.api.test_conflicts import diverged
from tests.api.test_sync import API, Pair, instructions
from tests.conftest import ADMIN_TOKEN, Clock, Witness
from tests.live import live_witness
from zfs_sync.cli import main
from zfs_sync.storage.sync_states import conflict_id


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[Witness]:
    """A ``Witness`` whose client talks HTTP to a real ``zfs-sync serve`` on 127.0.0.1."""
    with (live_witness(tmp_path, ZFS_SYNC_ADMIN_TOKEN=ADMIN_TOKEN) as url,
          httpx.Client(base_url=url, timeout=30) as client):
        # db/settings are unused: the helpers only talk HTTP; the clock is the real one.
        yield Witness(client=client, db=cast(Any, None), clock=Clock(), settings=None)


def cli(server: str, *args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(main, ["--server", server, "--token", ADMIN_TOKEN, *args],
                                env={})
    assert (result.exit_code == 0) is ok, result.output
    return result.output


def server_of(witness: Witness) -> str:
    return str(witness.client.base_url).rstrip("/")


def get_conflict(witness: Witness, ident: str) -> dict[str, Any]:
    response = witness.client.get(f"{API}/conflicts/{ident}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def setup_conflict(remote: Witness) -> tuple[Pair, str]:
    p = diverged(remote)
    ident = conflict_id(p.group, "data", p.dst.id, "target_diverged")
    assert instructions(remote, p.dst)["action_count"] == 0  # a conflict plans nothing
    return p, ident


def test_list_and_resolve_rollback_target(remote: Witness) -> None:
    p, ident = setup_conflict(remote)
    server = server_of(remote)

    table = cli(server, "conflicts", "list").splitlines()
    assert table[0].split() == ["ID", "TYPE", "DATASET", "TARGET", "STATUS", "DETECTED_AT"]
    assert len(table) == 2
    assert table[1].split()[:5] == [ident, "target_diverged", "data", "dst", "open"]
    listed = json.loads(cli(server, "conflicts", "list", "--group", "g1", "--json"))
    assert [(c["id"], c["type"], c["status"]) for c in listed] == [
        (ident, "target_diverged", "open")]
    assert listed[0]["details"]["target_only"] == ["x22", "x23"]

    out = cli(server, "conflicts", "resolve", ident, "rollback_target", "--note", "dst's own work")
    assert out.strip() == f"conflict {ident} is resolved (rollback_target)"

    recorded = get_conflict(remote, ident)
    assert (recorded["status"], recorded["resolution"], recorded["note"],
            recorded["resolved_by"]) == ("resolved", "rollback_target", "dst's own work", "admin")
    assert recorded["resolved_at"] is not None
    # The resolution steers the planner: roll dst back to the base, then the incremental.
    actions = instructions(remote, p.dst)["actions"]
    assert [(a["action_type"], a["sequence"]) for a in actions] == [
        ("rollback", 1), ("incremental_send", 2)]
    assert actions[0]["pipeline"] == [["zfs", "rollback", "-r", "backup/data@s21"]]
    assert (actions[1]["incremental_base"], actions[1]["snapshot_name"]) == ("s21", "s23")

    assert cli(server, "conflicts", "list").splitlines()[1:] == []  # no open conflict left
    every = json.loads(cli(server, "conflicts", "list", "--status", "all", "--json"))
    assert [(c["id"], c["status"], c["resolution"]) for c in every] == [
        (ident, "resolved", "rollback_target")]
    resolved = cli(server, "conflicts", "list", "--status", "resolved").splitlines()
    assert resolved[1].split()[:5] == [ident, "target_diverged", "data", "dst", "resolved"]


def test_resolve_ignore_with_json_output(remote: Witness) -> None:
    p, ident = setup_conflict(remote)
    server = server_of(remote)
    body = json.loads(cli(server, "conflicts", "resolve", ident, "ignore", "--json"))
    assert (body["id"], body["status"], body["resolution"]) == (ident, "ignored", "ignore")
    assert get_conflict(remote, ident) == body
    assert instructions(remote, p.dst)["action_count"] == 0  # ignored: still nothing planned
    ignored = cli(server, "conflicts", "list", "--status", "ignored").splitlines()
    assert ignored[1].split()[:5] == [ident, "target_diverged", "data", "dst", "ignored"]
    refused = cli(server, "conflicts", "resolve", ident, "destroy", ok=False)
    assert "'destroy' is not one of" in refused
