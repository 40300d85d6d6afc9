"""Build the argv stages of a pull, and the same as one shell line (``sync_command``).

The target runs every stage. Local stages are argv lists (the agent runs them without a
shell); the send half runs on the source through ssh, whose remote side is always parsed by a
shell, so that remote command is ``shlex.join`` of a validated argv. ``sync_command`` is what
the guide's scripts ``eval`` inside a ``while read`` loop: every stage ``shlex.join``-ed,
`` && `` after a rollback stage, `` | `` between send and receive.

Every name is validated again here (defence in depth: storage validated it on input), and no
argv element taken from data may start with ``-``, so nothing can be read as an option.
``zfs rollback -r`` appears in exactly one function, ``destructive_rollback_commands``.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from zfs_sync.domain import names

NO_SSH_HOSTNAME = "source has no ssh_hostname"
# `-n`: never read stdin (the guide's script runs commands inside `while read`);
# BatchMode: never prompt for a password or an unknown host key.
SSH_OPTIONS = ("-n", "-o", "BatchMode=yes")

Stage = tuple[str, ...]


@dataclass(frozen=True)
class Host:
    """What a command needs to know about one side of a pull."""

    zfs_path: str = "zfs"
    ssh_hostname: str | None = None
    ssh_user: str | None = None
    ssh_port: int = 22


@dataclass(frozen=True)
class SendOptions:
    raw: bool = False  # send -w
    compressed: bool = False  # send -c
    resumable: bool = False  # receive -s


@dataclass(frozen=True)
class Transfer:
    """One ``zfs send | zfs receive`` step, names as ZFS spells them."""

    source_dataset: str
    target_dataset: str
    snapshot: str  # on the source
    base: str | None = None  # on the source; None = full stream
    include_intermediate: bool = False  # -I instead of -i
    rollback_to: str | None = None  # the target's name of the base: plain rollback first
    options: SendOptions = SendOptions()


@dataclass(frozen=True)
class Commands:
    pipeline: tuple[Stage, ...]
    sync_command: str | None
    reason: str | None = None


def _data_arg(value: str) -> str:
    """Last line of defence: a value from data is never an option."""
    if value == "" or value.startswith("-"):
        raise ValueError(f"refusing command argument {value!r}: empty or starts with '-'")
    return value


def _snapshot(dataset: str, snapshot: str) -> str:
    names.validate_dataset_name(dataset)
    names.validate_snapshot_name(snapshot)
    return _data_arg(f"{dataset}@{snapshot}")


def _zfs(path: str) -> str:
    return _data_arg(names.validate_command_path(path))


def send_argv(zfs_path: str, transfer: Transfer) -> Stage:
    """The ``zfs send`` argv that runs on the source."""
    argv = [_zfs(zfs_path), "send"]
    if transfer.options.raw:
        argv.append("-w")  # raw implies compressed blocks already
    elif transfer.options.compressed:
        argv.append("-c")
    if transfer.base is not None:
        argv += ["-I" if transfer.include_intermediate else "-i"]
        argv.append(_snapshot(transfer.source_dataset, transfer.base))
    argv.append(_snapshot(transfer.source_dataset, transfer.snapshot))
    return tuple(argv)


def receive_argv(zfs_path: str, target_dataset: str, resumable: bool) -> Stage:
    """``zfs receive -u`` (never ``-F``: it could destroy the target's snapshots)."""
    names.validate_dataset_name(target_dataset)
    flags = ("-u", "-s") if resumable else ("-u",)
    return (_zfs(zfs_path), "receive", *flags, _data_arg(target_dataset))


def plain_rollback_argv(zfs_path: str, dataset: str, snapshot: str) -> Stage:
    """``zfs rollback`` without ``-r``: refuses if newer snapshots exist, so it only discards
    changes made since ``snapshot`` (the "destination has been modified" failure)."""
    return (_zfs(zfs_path), "rollback", _snapshot(dataset, snapshot))


def _ssh_destination(host: Host) -> str:
    if host.ssh_hostname is None:
        raise ValueError(NO_SSH_HOSTNAME)
    hostname = names.validate_ssh_hostname(host.ssh_hostname)
    # ssh takes a bare IPv6 address after '@'; the bracket form is for URLs and scp.
    hostname = hostname.removeprefix("[").removesuffix("]")
    if host.ssh_user is None:
        return _data_arg(hostname)
    return _data_arg(f"{names.validate_ssh_user(host.ssh_user)}@{hostname}")


def _ssh_port(port: int) -> str:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"ssh_port must be an integer from 1 to 65535, not {port!r}")
    return str(port)


def ssh_argv(host: Host, remote: Sequence[str]) -> Stage:
    """Run ``remote`` on ``host``; the remote shell re-splits the ``shlex.join``-ed string."""
    destination = _ssh_destination(host)
    port = _ssh_port(host.ssh_port)
    return ("ssh", *SSH_OPTIONS, "-p", port, destination, shlex.join(remote))


def render_sync_command(stages: Sequence[Stage], separators: Sequence[str]) -> str:
    """``stage0 sep0 stage1 sep1 stage2``: each stage quoted with ``shlex.join``."""
    if len(separators) != len(stages) - 1:
        raise ValueError("need exactly one separator between consecutive stages")
    parts = [shlex.join(stages[0])]
    for separator, stage in zip(separators, stages[1:], strict=True):
        parts += [separator, shlex.join(stage)]
    return " ".join(parts)


def transfer_commands(source: Host, target: Host, transfer: Transfer) -> Commands:
    """The pull pipeline ``[rollback?] ssh source zfs send | zfs receive``, run on the target.

    Without the source's ssh_hostname only the local stages are built and ``sync_command`` is
    None with a reason: a host is never guessed.
    """
    local: list[Stage] = []
    if transfer.rollback_to is not None:
        local.append(
            plain_rollback_argv(target.zfs_path, transfer.target_dataset, transfer.rollback_to)
        )
    receive = receive_argv(target.zfs_path, transfer.target_dataset, transfer.options.resumable)
    send = send_argv(source.zfs_path, transfer)  # validated even when it cannot be sent
    if source.ssh_hostname is None:
        return Commands((*local, receive), None, NO_SSH_HOSTNAME)
    stages = (*local, ssh_argv(source, send), receive)
    separators = ["&&"] * len(local) + ["|"]
    return Commands(stages, render_sync_command(stages, separators))


def destructive_rollback_commands(target: Host, dataset: str, snapshot: str) -> Commands:
    """``zfs rollback -r``: destroys the target's snapshots after ``snapshot``.

    The only place ``-r`` is built; the planner calls it only after ``allow_rollback`` or a
    ``rollback_target`` resolution that lists exactly what is destroyed.
    """
    stage = (_zfs(target.zfs_path), "rollback", "-r", _snapshot(dataset, snapshot))
    return Commands((stage,), shlex.join(stage))


def rename_commands(target: Host, dataset: str, new_name: str) -> Commands:
    """``zfs rename``: moves the target's dataset aside, destroying nothing."""
    old = _data_arg(names.validate_dataset_name(dataset))
    new = _data_arg(names.validate_dataset_name(new_name))
    if names.pool_of(old) != names.pool_of(new):
        raise ValueError("a dataset can only be renamed within its pool")
    stage = (_zfs(target.zfs_path), "rename", old, new)
    return Commands((stage,), shlex.join(stage))
