"""Vet the witness's actions before anything runs.

The witness is trusted to *plan*, not to run code on this host. Every action is checked
against what the witness's command builder (``domain/commands.py``) can legitimately
produce, and the agent then runs **its own** argv built from the checked parts, never the
strings it was given:

- each stage's ``argv[0]`` is this host's ``zfs_path``, or ``ssh`` for the send half;
- subcommands and flags come from a short allow-list per action type (``receive -F`` and
  ``rollback -r`` outside a ``rollback`` action are refused);
- every dataset and snapshot is a valid ZFS name (``domain/names.py``), not starting with
  ``-``, and agrees with the action's own fields; the target lies inside the agent's
  ``datasets`` filter;
- the ssh stage's remote command is ``shlex.split`` and must be exactly a ``zfs send`` of the
  action's snapshot (from its base).

Anything else raises ``Refused`` with a sentence saying what was wrong.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zfs_sync.agent import zfs as zfsmod
from zfs_sync.agent.config import AgentConfig
from zfs_sync.agent.remote import SshTarget
from zfs_sync.domain import names

ACTION_TYPES = ("full_send", "incremental_send", "rollback", "rename")
TRANSFERS = ("full_send", "incremental_send")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_SEND_FLAGS = frozenset({"-w", "-c"})
_RECEIVE_FLAGS = frozenset({"-u", "-s"})
_SSH_PREFIX = ("-n", "-o", "BatchMode=yes")
_RENAME_SUFFIX = re.compile(r"\.zfs-sync-\d{8}(-\d{1,4})?")


class Refused(ValueError):
    """An action this agent will not run; the message says why."""


@dataclass(frozen=True)
class Action:
    """A vetted action: everything the executor needs, nothing it has to trust."""

    action_id: str
    action_type: str
    sync_group_id: str
    dataset: str  # logical
    target_dataset: str
    source_dataset: str
    sequence: int
    priority: int
    snapshot_name: str | None = None
    snapshot_id: str | None = None
    incremental_base: str | None = None
    include_intermediate: bool = False
    estimated_size: int | None = None
    source: SshTarget | None = None  # None: the witness had no ssh_hostname for the source
    source_zfs: str = "zfs"
    send_flags: tuple[str, ...] = ()
    receive_flags: tuple[str, ...] = ("-u",)
    rollback_to: str | None = None  # plain rollback of the target before the receive
    rename_to: str | None = None
    reason: str | None = None

    @property
    def is_transfer(self) -> bool:
        return self.action_type in TRANSFERS

    def describe(self) -> str:
        what = self.snapshot_name or self.rename_to or ""
        return f"{self.action_type} {self.target_dataset} {what}".strip()


def _field(raw: Mapping[str, Any], key: str, kind: type, optional: bool = False) -> Any:
    value = raw.get(key)
    if value is None and optional:
        return None
    if kind is int and isinstance(value, bool):
        raise Refused(f"{key} must be an integer")
    if not isinstance(value, kind):
        raise Refused(f"{key} must be a {kind.__name__}, not {type(value).__name__}")
    return value


def _ident(raw: Mapping[str, Any], key: str, optional: bool = False) -> str | None:
    value = _field(raw, key, str, optional)
    if value is not None and not _ID.fullmatch(value):
        raise Refused(f"{key} is not a valid id: {value!r}")
    return value  # type: ignore[no-any-return]


def _name(check: Any, value: str, what: str) -> str:
    """A name from the witness: valid for ZFS, and never something an option parser takes."""
    if value.startswith("-"):
        raise Refused(f"{what} {value!r} starts with '-'")
    try:
        check(value)
        return zfsmod.data_arg(value)
    except ValueError as exc:  # names.InvalidName is a ValueError
        raise Refused(f"{what} {value!r} is not acceptable: {exc}") from None


def vet(raw: Any, config: AgentConfig, zfs_path: str) -> Action:
    """Check one action from the witness; return what the agent may run, or raise Refused."""
    if not isinstance(raw, dict):
        raise Refused("an action must be a JSON object")
    action_type = _field(raw, "action_type", str)
    if action_type not in ACTION_TYPES:
        raise Refused(f"unknown action_type {action_type!r}")
    if raw.get("target_system_id") != config.system_id:
        raise Refused("the action is for another system (target_system_id is not this host)")
    target = _name(names.validate_dataset_name, _field(raw, "target_dataset", str),
                   "target_dataset")
    if not config.datasets.matches(target):
        raise Refused(f"target_dataset {target} is outside this agent's datasets filter")
    if raw.get("target_pool") not in (None, names.pool_of(target)):
        raise Refused("target_pool does not match target_dataset")
    source = _name(names.validate_dataset_name, _field(raw, "source_dataset", str),
                   "source_dataset")
    common = {
        "action_id": _ident(raw, "action_id"),
        "action_type": action_type,
        "sync_group_id": _ident(raw, "sync_group_id"),
        "dataset": _logical(raw),
        "target_dataset": target,
        "source_dataset": source,
        "sequence": _field(raw, "sequence", int),
        "priority": _field(raw, "priority", int, optional=True) or 2,
        "snapshot_id": _ident(raw, "snapshot_id", optional=True),
        "estimated_size": _size(raw),
        "reason": _reason(raw),
    }
    stages = _stages(raw)
    if action_type == "rollback":
        return _vet_rollback(raw, stages, common, config, zfs_path)
    if action_type == "rename":
        return _vet_rename(stages, common, zfs_path)
    return _vet_transfer(raw, stages, common, zfs_path)


def _logical(raw: Mapping[str, Any]) -> str:
    value = _field(raw, "dataset", str)
    if value == "":
        return value  # the root itself
    return _name(names.validate_relative_dataset, value, "dataset")


def is_logical(value: str) -> bool:
    """A logical dataset ("" is the root itself)."""
    if value == "":
        return True
    try:
        _name(names.validate_relative_dataset, value, "dataset")
    except Refused:
        return False
    return True


def _size(raw: Mapping[str, Any]) -> int | None:
    value = raw.get("estimated_size")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _reason(raw: Mapping[str, Any]) -> str | None:
    value = raw.get("reason")
    if not isinstance(value, str):
        return None
    return "".join(c if c.isprintable() else "?" for c in value[:300])


def _stages(raw: Mapping[str, Any]) -> list[list[str]]:
    pipeline = raw.get("pipeline")
    if not isinstance(pipeline, list) or not pipeline or len(pipeline) > 3:
        raise Refused("pipeline must be a list of one to three argv lists")
    for stage in pipeline:
        if not isinstance(stage, list) or not stage or not all(isinstance(a, str) for a in stage):
            raise Refused("every pipeline stage must be a non-empty list of strings")
        for arg in stage:
            if "\x00" in arg or "\n" in arg or "\r" in arg:
                raise Refused("a pipeline argument contains a control character")
    return pipeline


def _zfs_stage(stage: Sequence[str], zfs_path: str, subcommand: str) -> list[str]:
    if stage[0] != zfs_path:
        raise Refused(f"stage {shlex.join(stage)!r} does not run this host's zfs ({zfs_path})")
    if len(stage) < 2 or stage[1] != subcommand:
        raise Refused(f"stage {shlex.join(stage)!r} is not a 'zfs {subcommand}'")
    return list(stage[2:])


def _vet_rollback(raw: Mapping[str, Any], stages: list[list[str]], common: dict[str, Any],
                  config: AgentConfig, zfs_path: str) -> Action:
    if not config.allow_rollback:
        raise Refused("rollback actions are disabled on this host (allow_rollback: false)")
    if len(stages) != 1:
        raise Refused("a rollback action has exactly one stage")
    args = _zfs_stage(stages[0], zfs_path, "rollback")
    snapshot = _field(raw, "snapshot_name", str)
    expected = ["-r", zfsmod.snapshot_arg(common["target_dataset"], _snap(snapshot))]
    if args != expected:
        raise Refused(f"rollback stage must be 'zfs rollback -r {expected[1]}'")
    return Action(**common, snapshot_name=snapshot, rollback_to=snapshot)


def _vet_rename(stages: list[list[str]], common: dict[str, Any], zfs_path: str) -> Action:
    if len(stages) != 1:
        raise Refused("a rename action has exactly one stage")
    args = _zfs_stage(stages[0], zfs_path, "rename")
    target = common["target_dataset"]
    if len(args) != 2 or args[0] != target:
        raise Refused(f"rename stage must be 'zfs rename {target} <new name>'")
    new = _name(names.validate_dataset_name, args[1], "rename target")
    if not _RENAME_SUFFIX.fullmatch(new[len(target):]) or not new.startswith(target):
        raise Refused(f"rename must move {target} aside to {target}.zfs-sync-YYYYMMDD")
    return Action(**common, rename_to=new)


def _snap(value: str) -> str:
    return _name(names.validate_snapshot_name, value, "snapshot name")


def _vet_transfer(raw: Mapping[str, Any], stages: list[list[str]], common: dict[str, Any],
                  zfs_path: str) -> Action:
    snapshot = _snap(_field(raw, "snapshot_name", str))
    incremental = common["action_type"] == "incremental_send"
    base = _field(raw, "incremental_base", str, optional=not incremental)
    if incremental and base is None:
        raise Refused("an incremental_send needs incremental_base")
    if not incremental and base is not None:
        raise Refused("a full_send has no incremental_base")
    base = _snap(base) if base is not None else None
    intermediate = raw.get("include_intermediate") is True
    rollback_to = None
    if raw.get("rollback_to_base") is True:
        if not incremental or len(stages) < 2:
            raise Refused("rollback_to_base only comes with an incremental_send")
        rollback_to = _plain_rollback(stages.pop(0), common["target_dataset"], zfs_path)
    elif len(stages) == 3:
        raise Refused("a transfer without rollback_to_base has at most two stages")
    receive = stages[-1]
    receive_flags = _vet_receive(receive, common["target_dataset"], zfs_path)
    source = _source(raw) if len(stages) == 2 else None
    send_flags: tuple[str, ...] = ()
    source_zfs = "zfs"
    if len(stages) == 2:
        remote = _vet_ssh(stages[0], source)  # type: ignore[arg-type]
        source_zfs, send_flags = _vet_send(remote, common["source_dataset"], snapshot, base,
                                           intermediate)
    return Action(**common, snapshot_name=snapshot, incremental_base=base,
                  include_intermediate=intermediate, source=source, source_zfs=source_zfs,
                  send_flags=send_flags, receive_flags=receive_flags, rollback_to=rollback_to)


def _plain_rollback(stage: Sequence[str], target: str, zfs_path: str) -> str:
    """The safe rollback before a receive: no flags, so it cannot destroy a snapshot."""
    args = _zfs_stage(stage, zfs_path, "rollback")
    if len(args) != 1 or args[0].startswith("-"):
        raise Refused("the rollback before a receive takes no flags (never -r/-R/-f)")
    dataset, _, snap = args[0].partition("@")
    if dataset != target or not snap:
        raise Refused(f"the rollback before a receive must be of {target}@<base>")
    return _snap(snap)


def _vet_receive(stage: Sequence[str], target: str, zfs_path: str) -> tuple[str, ...]:
    if stage[:1] == [zfs_path] and stage[1:2] == ["recv"]:
        stage = [zfs_path, "receive", *stage[2:]]
    args = _zfs_stage(stage, zfs_path, "receive")
    if not args or args[-1] != target:
        raise Refused(f"the receive must be into target_dataset {target}")
    flags = args[:-1]
    bad = [f for f in flags if f not in _RECEIVE_FLAGS]
    if bad or len(set(flags)) != len(flags):
        raise Refused(f"receive flags {bad or flags} are not allowed (only -u and -s; never -F)")
    return tuple(flags)


def _source(raw: Mapping[str, Any]) -> SshTarget:
    host = _field(raw, "source_ssh_hostname", str)
    user = _field(raw, "source_ssh_user", str, optional=True)
    port = _field(raw, "source_ssh_port", int, optional=True) or 22
    try:
        names.validate_ssh_hostname(host)
        if user is not None:
            names.validate_ssh_user(user)
    except names.InvalidName as exc:
        raise Refused(str(exc)) from None
    if not 0 < port < 65536:
        raise Refused(f"source_ssh_port {port} is not a port")
    return SshTarget(host, user, port)


def _vet_ssh(stage: Sequence[str], source: SshTarget) -> str:
    """``ssh -n -o BatchMode=yes -p PORT DEST 'remote'`` -> the remote command string."""
    expected = ["ssh", *_SSH_PREFIX, "-p", str(source.port), source.destination()]
    if list(stage[:-1]) != expected or len(stage) != len(expected) + 1:
        raise Refused(
            "the send stage must be exactly 'ssh -n -o BatchMode=yes -p PORT USER@HOST CMD' "
            "for the action's source (no other ssh options)"
        )
    return stage[-1]


def _vet_send(remote: str, dataset: str, snapshot: str, base: str | None,
              intermediate: bool) -> tuple[str, tuple[str, ...]]:
    try:
        argv = shlex.split(remote)
    except ValueError as exc:
        raise Refused(f"the remote command cannot be parsed: {exc}") from None
    if len(argv) < 3 or argv[1] != "send":
        raise Refused(f"the remote command must be a 'zfs send', not {remote!r}")
    zfs_cmd = argv[0]
    try:
        names.validate_command_path(zfs_cmd)
    except names.InvalidName as exc:
        raise Refused(f"remote zfs command {zfs_cmd!r}: {exc}") from None
    if zfs_cmd.rsplit("/", 1)[-1] != "zfs":
        raise Refused(f"the remote command must run zfs, not {zfs_cmd!r}")
    flags = [a for a in argv[2:] if a in _SEND_FLAGS]
    expected = zfsmod.send_argv(zfs_cmd, dataset, snapshot, base, intermediate, flags)
    if tuple(argv) != expected:
        raise Refused(
            f"the remote command {remote!r} is not the expected {shlex.join(expected)!r}"
        )
    return zfs_cmd, tuple(flags)
