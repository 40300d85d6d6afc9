"""The agent against a real witness process (the fake zfs underneath): register, report,
heartbeat, scoped re-report. Pins the agent's half of the HTTP contract (DESIGN.md §7)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.agent.conftest import FakeZfs
from tests.live import live_witness
from zfs_sync.agent.config import load_config
from zfs_sync.agent.cycle import Agent
from zfs_sync.agent.main import main
from zfs_sync.agent.zfs import Zfs

TOKEN = "contract-admin-token-0123456789"


@pytest.fixture
def witness(tmp_path: Path) -> Iterator[str]:
    data = tmp_path / "witness"
    data.mkdir()
    with live_witness(data, ZFS_SYNC_ADMIN_TOKEN=TOKEN) as url:
        yield url


def test_register_report_heartbeat_against_the_real_witness(
        tmp_path: Path, fake: FakeZfs, flavor: str, witness: str) -> None:
    config = tmp_path / "agent.yaml"
    assert main(["--config", str(config), "register", "--server", witness, "--admin-token",
                 TOKEN, "--hostname", "alpha", "--ssh-hostname", "alpha.example",
                 "--include", "tank"]) == 0
    system_id = yaml.safe_load(config.read_text())["system_id"]
    assert main(["--config", str(config), "report"]) == 0
    assert main(["--config", str(config), "heartbeat", "--interval", "600"]) == 0

    system = httpx.get(f"{witness}/api/v1/systems/{system_id}", timeout=10).json()
    assert system["status"] == "online" and system["agent_version"]
    assert system["capabilities"]["holds"] is True
    assert system["capabilities"]["resumable_receive"] is (flavor == "openzfs")
    snapshots = httpx.get(f"{witness}/api/v1/snapshots", params={"system_id": system_id},
                          timeout=10).json()
    assert sorted((s["dataset"], s["name"], s["guid"]) for s in snapshots) == [
        ("tank/data", "a", "11"), ("tank/data", "b", "12"), ("tank/data", "c", "13")]

    # A scoped re-report replaces only that dataset's snapshots.
    state = fake.state()
    state["datasets"]["tank/data"]["snapshots"].pop(0)
    fake.write(state)
    agent = Agent(load_config(str(config)), Zfs("zfs"))
    try:
        result = agent.report(["tank/data"])
    finally:
        agent.close()
    assert result["deleted"] == 1
    snapshots = httpx.get(f"{witness}/api/v1/snapshots", params={"system_id": system_id},
                          timeout=10).json()
    assert sorted(s["name"] for s in snapshots) == ["b", "c"]


def test_bad_key_is_a_clear_error(tmp_path: Path, fake: FakeZfs, witness: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump({"server_url": witness, "system_id": "nope-1",
                                      "api_key": "zs_wrong_key", "datasets": {"include": ["tank"]},
                                      "lock_file": str(tmp_path / "lock")}))
    assert main(["--config", str(config), "heartbeat"]) == 3
    assert "401" in capsys.readouterr().err
