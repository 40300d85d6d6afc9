"""The command builder: argv stages, the one-line sync_command, and refusing bad names."""

from __future__ import annotations

import shlex

import pytest

from zfs_sync.domain.commands import (
    NO_SSH_HOSTNAME,
    Host,
    SendOptions,
    Transfer,
    destructive_rollback_commands,
    receive_argv,
    rename_commands,
    render_sync_command,
    send_argv,
    ssh_argv,
    transfer_commands,
)
from zfs_sync.domain.names import InvalidName

SRC = Host("zfs", "src", "zfs", 22)
DST = Host("zfs")
SSH = ["ssh", "-n", "-o", "BatchMode=yes", "-p", "22", "zfs@src"]


def test_incremental_with_rollback_to_base_is_the_design_example() -> None:
    transfer = Transfer(
        "tank/data", "backup/data", "b", base="a", include_intermediate=True, rollback_to="a"
    )
    built = transfer_commands(SRC, DST, transfer)
    assert [list(s) for s in built.pipeline] == [
        ["zfs", "rollback", "backup/data@a"],
        [*SSH, "zfs send -I tank/data@a tank/data@b"],
        ["zfs", "receive", "-u", "backup/data"],
    ]
    assert built.sync_command == (
        "zfs rollback backup/data@a && ssh -n -o BatchMode=yes -p 22 zfs@src "
        "'zfs send -I tank/data@a tank/data@b' | zfs receive -u backup/data"
    )
    assert built.reason is None


@pytest.mark.parametrize(
    ("transfer", "send"),
    [
        (Transfer("tank/d", "b/d", "s1"), ["zfs", "send", "tank/d@s1"]),
        (
            Transfer("tank/d", "b/d", "s2", base="s1"),
            ["zfs", "send", "-i", "tank/d@s1", "tank/d@s2"],
        ),
        (
            Transfer("tank/d", "b/d", "s2", "s1", True),
            ["zfs", "send", "-I", "tank/d@s1", "tank/d@s2"],
        ),
        (
            Transfer("tank/d", "b/d", "s1", options=SendOptions(raw=True, compressed=True)),
            ["zfs", "send", "-w", "tank/d@s1"],
        ),
        (
            Transfer("tank/d", "b/d", "s1", options=SendOptions(compressed=True)),
            ["zfs", "send", "-c", "tank/d@s1"],
        ),
    ],
)
def test_send_argv(transfer: Transfer, send: list[str]) -> None:
    assert list(send_argv("zfs", transfer)) == send


@pytest.mark.parametrize(
    ("resumable", "argv"),
    [(False, ["zfs", "receive", "-u", "b/d"]), (True, ["zfs", "receive", "-u", "-s", "b/d"])],
)
def test_receive_never_forces(resumable: bool, argv: list[str]) -> None:
    assert list(receive_argv("zfs", "b/d", resumable)) == argv


def test_each_side_uses_its_own_zfs_path() -> None:
    source = Host("/usr/local/sbin/zfs", "src", None, 2222)
    target = Host("/sbin/zfs")
    built = transfer_commands(source, target, Transfer("tank/d", "b/d", "s1"))
    ssh, receive = built.pipeline
    assert ssh == (
        "ssh",
        "-n",
        "-o",
        "BatchMode=yes",
        "-p",
        "2222",
        "src",
        "/usr/local/sbin/zfs send tank/d@s1",
    )
    assert receive[0] == "/sbin/zfs"


def test_no_ssh_hostname_builds_only_local_stages_and_no_command() -> None:
    transfer = Transfer("tank/d", "b/d", "s2", "s1", True, rollback_to="s1")
    built = transfer_commands(Host("zfs"), DST, transfer)
    assert built.pipeline == (("zfs", "rollback", "b/d@s1"), ("zfs", "receive", "-u", "b/d"))
    assert built.sync_command is None
    assert built.reason == NO_SSH_HOSTNAME


def test_ipv6_destination_is_bare_after_the_user() -> None:
    assert ssh_argv(Host("zfs", "[fd00::1]", "backup", 22), ["zfs", "list"])[-2] == "backup@fd00::1"


def test_destructive_rollback_is_the_only_r() -> None:
    built = destructive_rollback_commands(DST, "b/d", "base")
    assert built.pipeline == (("zfs", "rollback", "-r", "b/d@base"),)
    assert built.sync_command == "zfs rollback -r b/d@base"


def test_rename_stays_in_the_pool() -> None:
    built = rename_commands(DST, "b/d", "b/d.zfs-sync-20240101")
    assert built.sync_command == "zfs rename b/d b/d.zfs-sync-20240101"
    with pytest.raises(ValueError, match="within its pool"):
        rename_commands(DST, "b/d", "other/d")


def test_every_legal_character_stays_one_pipeline() -> None:
    """':', '.', '-', '_' and space in pool, dataset and snapshot names."""
    source_ds, target_ds = "tank/data set:v-1.x_y/ child", "back up/a:b.c-d_e f/ child"
    transfer = Transfer(
        source_ds,
        target_ds,
        "auto snap:2024-01-01.x_1",
        "base snap:0",
        True,
        rollback_to="base snap:0",
    )
    built = transfer_commands(Host("zfs", "src.example-1", "zfs_user", 22), DST, transfer)
    assert built.sync_command is not None
    tokens = shlex.split(built.sync_command)
    rollback, ssh, receive = (list(s) for s in built.pipeline)
    assert tokens == [*rollback, "&&", *ssh, "|", *receive]
    assert tokens.count("|") == 1 and tokens.count("&&") == 1
    remote = shlex.split(ssh[-1])
    assert remote == [
        "zfs",
        "send",
        "-I",
        f"{source_ds}@base snap:0",
        f"{source_ds}@auto snap:2024-01-01.x_1",
    ]


@pytest.mark.parametrize(
    "transfer",
    [
        Transfer("tank/d;rm -rf /", "b/d", "s"),
        Transfer("tank/d", "b/d", "s$(id)"),
        Transfer("tank/d", "b/d|x", "s"),
        Transfer("tank/-d", "b/d", "s"),
        Transfer("tank/d", "b/d", "-s"),
        Transfer("tank/d", "b/d", "s", base="a'b"),
        Transfer("tank/d", "b/d", "s", rollback_to="a\nb"),
        Transfer("-tank/d", "b/d", "s"),
        Transfer("tank/d", "b/d", "s`x`"),
    ],
)
def test_invalid_names_are_refused(transfer: Transfer) -> None:
    with pytest.raises(ValueError):
        transfer_commands(SRC, DST, transfer)


@pytest.mark.parametrize(
    "host",
    [
        Host("zfs", "-oProxyCommand=x"),
        Host("zfs", "src", "-l"),
        Host("zfs", "src; id"),
        Host("zfs", "src", "us er"),
        Host("zfs", "src", None, 0),
        Host("zfs", "src", None, 70000),
        Host("-zfs", "src"),
        Host("zfs;id", "src"),
        Host("../zfs", "src"),
    ],
)
def test_invalid_hosts_are_refused(host: Host) -> None:
    with pytest.raises(ValueError):
        transfer_commands(host, DST, Transfer("tank/d", "b/d", "s"))


def test_invalid_name_is_an_invalid_name_error() -> None:
    with pytest.raises(InvalidName):
        destructive_rollback_commands(DST, "b/d", "x@y")


def test_render_needs_one_separator_per_gap() -> None:
    with pytest.raises(ValueError):
        render_sync_command([("a",), ("b",)], [])
    assert render_sync_command([("a b",), ("c",)], ["|"]) == "'a b' | c"
