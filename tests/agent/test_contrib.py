"""contrib/agent: the systemd units, the cron line and the sanoid hooks do what they say."""

from __future__ import annotations

import configparser
import os
import subprocess
from pathlib import Path

import pytest

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "agent"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(CONTRIB / name)
    return parser


def test_service_runs_one_cycle_without_systemds_default_timeout() -> None:
    service = unit("zfs-sync-agent.service")["Service"]
    assert service["Type"] == "oneshot"
    assert service["ExecStart"].split()[-1] == "run"
    assert service["TimeoutStartSec"] == "infinity"  # a first full send takes hours
    assert service["KillMode"] == "mixed"  # SIGTERM to the agent, which stops its children
    assert "143" in service["SuccessExitStatus"]


def test_timer_starts_the_service() -> None:
    timer = unit("zfs-sync-agent.timer")
    assert timer["Timer"]["OnCalendar"] and timer["Install"]["WantedBy"] == "timers.target"


def test_cron_line_is_a_cron_d_entry() -> None:
    lines = [line for line in (CONTRIB / "zfs-sync-agent.cron").read_text().splitlines()
             if line and not line.startswith("#") and "=" not in line.split()[0]]
    (line,) = lines
    fields = line.split()
    assert fields[5] == "root" and fields[6] == "zfs-sync-agent" and "run" in fields


@pytest.fixture
def fake_agent(tmp_path: Path) -> tuple[Path, Path]:
    calls = tmp_path / "calls"
    agent = tmp_path / "zfs-sync-agent"
    agent.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n'
                     'case "$2" in *@keep) exit 1 ;; esac\nexit 0\n')
    agent.chmod(0o755)
    return agent, calls


@pytest.mark.parametrize("snapname, code", [("keep", 1), ("old", 0)])
def test_sanoid_pre_prune_hook_asks_may_destroy(fake_agent: tuple[Path, Path], snapname: str,
                                                code: int) -> None:
    agent, calls = fake_agent
    env = {**os.environ, "ZFS_SYNC_AGENT": str(agent), "SANOID_SCRIPT": "prune",
           "SANOID_TARGET": "tank/data", "SANOID_SNAPNAME": snapname}
    result = subprocess.run([str(CONTRIB / "sanoid-pre-prune.sh")], env=env, check=False)
    assert result.returncode == code
    assert calls.read_text().split() == ["may-destroy", f"tank/data@{snapname}"]


def test_sanoid_pre_prune_hook_keeps_when_unsure(fake_agent: tuple[Path, Path]) -> None:
    agent, calls = fake_agent
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANOID_")}
    result = subprocess.run([str(CONTRIB / "sanoid-pre-prune.sh")], capture_output=True,
                            env={**env, "ZFS_SYNC_AGENT": str(agent)}, check=False)
    assert result.returncode == 2 and not calls.exists()


def test_sanoid_post_snapshot_hook_never_fails_sanoid(tmp_path: Path) -> None:
    failing = tmp_path / "agent"
    failing.write_text("#!/bin/sh\nexit 3\n")
    failing.chmod(0o755)
    result = subprocess.run([str(CONTRIB / "sanoid-post-snapshot.sh")], capture_output=True,
                            env={**os.environ, "ZFS_SYNC_AGENT": str(failing)}, check=False)
    assert result.returncode == 0 and b"report failed" in result.stderr
