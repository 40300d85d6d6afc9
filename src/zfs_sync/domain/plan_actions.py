"""Turn an edge's abstract steps into Actions: ids, hosts, capability flags and commands."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from zfs_sync.domain import commands as cmd
from zfs_sync.domain.names import pool_of
from zfs_sync.domain.plan_edge import Step
from zfs_sync.domain.plan_types import (
    COMPRESSED_SEND,
    RAW_SEND,
    RESUMABLE_RECEIVE,
    Action,
    ActionType,
    DatasetFacts,
    Member,
)

PRIORITY_LATE, PRIORITY_NORMAL = 1, 2


@dataclass(frozen=True)
class EdgeEnds:
    """Both ends of one edge: who, which datasets, and what each side reported."""

    sync_group_id: str
    dataset: str  # logical
    source: Member
    target: Member
    source_dataset: str
    target_dataset: str
    source_facts: DatasetFacts
    target_facts: DatasetFacts | None


def send_options(
    source: Member, target: Member, source_facts: DatasetFacts, target_facts: DatasetFacts | None
) -> cmd.SendOptions:
    """Flags both hosts support. ``target_facts`` None: a full stream (the dataset is new).

    Raw (-w) for encrypted sources; an existing copy that was received raw stays raw (a raw
    incremental only applies onto a raw-received dataset, and a plain one only onto a plain
    one). Raises ValueError when the copy needs raw but a host cannot send or receive it.
    """
    raw_ok = source.supports(RAW_SEND) and target.supports(RAW_SEND)
    if target_facts is None:
        raw = source_facts.encryption and raw_ok
    elif target_facts.received_raw is not None:
        raw = target_facts.received_raw
    else:
        raw = source_facts.encryption and target_facts.encryption and raw_ok
    if raw and not raw_ok:
        raise ValueError(
            "the target's copy was received raw, but raw_send is not supported by both hosts"
        )

    def both(flag: str) -> bool:
        return source.supports(flag) and target.supports(flag)

    return cmd.SendOptions(raw, not raw and both(COMPRESSED_SEND), both(RESUMABLE_RECEIVE))


def action_id(
    group_id: str,
    dataset: str,
    target_id: str,
    source_id: str,
    action_type: ActionType,
    snapshot: str | None,
    snapshot_id: str | None,
    base: str | None,
    sequence: int,
) -> str:
    """Deterministic: fetching the same plan again gives the same ids."""
    parts = [
        group_id,
        dataset,
        target_id,
        source_id,
        action_type,
        snapshot or "",
        snapshot_id or "",
        base or "",
        str(sequence),
    ]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def _host(member: Member) -> cmd.Host:
    return cmd.Host(member.zfs_path, member.ssh_hostname, member.ssh_user, member.ssh_port)


def step_commands(ends: EdgeEnds, step: Step, options: cmd.SendOptions) -> cmd.Commands:
    target = _host(ends.target)
    if step.action_type == ActionType.ROLLBACK:
        assert step.base_on_target is not None
        return cmd.destructive_rollback_commands(target, ends.target_dataset, step.base_on_target)
    if step.action_type == ActionType.RENAME:
        assert step.rename_to is not None
        return cmd.rename_commands(target, ends.target_dataset, step.rename_to)
    assert step.snapshot is not None
    transfer = cmd.Transfer(
        ends.source_dataset,
        ends.target_dataset,
        step.snapshot.name,
        step.base.name if step.base else None,
        step.include_intermediate,
        step.base_on_target if step.rollback_to_base else None,
        options,
    )
    return cmd.transfer_commands(_host(ends.source), target, transfer)


def build_actions(
    ends: EdgeEnds, steps: Sequence[Step], late: bool, missing_parent: str | None
) -> tuple[Action, ...]:
    """The edge's chain, numbered from 1. Raises ValueError when a command cannot be built
    (an invalid name, or raw needed but unsupported): the caller then hands out nothing."""
    fresh = any(s.action_type == ActionType.FULL_SEND for s in steps)
    options = send_options(
        ends.source, ends.target, ends.source_facts, None if fresh else ends.target_facts
    )
    return tuple(
        _action(ends, step, seq, options, late, missing_parent)
        for seq, step in enumerate(steps, start=1)
    )


def _action(
    ends: EdgeEnds,
    step: Step,
    sequence: int,
    options: cmd.SendOptions,
    late: bool,
    missing_parent: str | None,
) -> Action:
    built = step_commands(ends, step, options)
    sync_command, reason = built.sync_command, built.reason
    if ends.source.ssh_hostname is None:
        # The chain cannot finish, so none of it (not even a rollback) is runnable as is.
        sync_command, reason = None, cmd.NO_SSH_HOSTNAME
    elif step.action_type == ActionType.FULL_SEND:
        reason = missing_parent
    snap = step.snapshot
    name = snap.name if snap else step.base_on_target
    snapshot_id = (snap.id or None) if snap else None
    base = step.base.name if step.base else None
    source, target = ends.source, ends.target
    return Action(
        action_id(
            ends.sync_group_id,
            ends.dataset,
            target.system_id,
            source.system_id,
            step.action_type,
            name,
            snapshot_id,
            base,
            sequence,
        ),
        step.action_type,
        ends.sync_group_id,
        ends.dataset,
        source.system_id,
        target.system_id,
        pool_of(ends.source_dataset),
        ends.source_dataset,
        pool_of(ends.target_dataset),
        ends.target_dataset,
        name,
        snapshot_id,
        base,
        step.action_type == ActionType.INCREMENTAL_SEND,
        step.include_intermediate,
        step.rollback_to_base,
        step.estimated_size,
        PRIORITY_LATE if late else PRIORITY_NORMAL,
        sequence,
        source.ssh_hostname,
        source.ssh_user,
        source.ssh_port,
        built.pipeline,
        sync_command,
        reason,
    )
