"""Carry out one vetted action: the commands, in order, for real or as a dry run.

A transfer is: resume or abort an interrupted receive; create missing parents (unmounted);
the plain rollback that discards changes made since the base (never a snapshot); the pull
``ssh source zfs send ... | zfs receive -u ...``; then move the holds to the new base.
Every command is an argv list; ``commands()`` returns exactly what ``run()`` would run, which
is what ``sync --dry-run`` prints.
"""

from __future__ import annotations

import logging
import shlex
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from zfs_sync.agent import pipeline
from zfs_sync.agent import zfs as zfsmod
from zfs_sync.agent.config import AgentConfig
from zfs_sync.agent.remote import ssh_argv
from zfs_sync.agent.validate import Action
from zfs_sync.agent.zfs import Zfs, ZfsError, run_process

log = logging.getLogger("zfs_sync.agent.actions")
SSH_FAILED = 255  # ssh's own failure (connection, auth), as opposed to the remote command's


class ActionFailed(RuntimeError):
    """The action did not complete; ``str()`` is the message reported to the witness."""

    def __init__(self, message: str, bytes_moved: int = 0) -> None:
        super().__init__(message)
        self.bytes_moved = bytes_moved


@dataclass
class Done:
    bytes_moved: int = 0
    notes: list[str] = field(default_factory=list)


ProgressFactory = Callable[[Action], Any]  # -> a pipeline.Progress, maybe with close()


class Runner:
    """Runs actions against the local zfs and, through ssh, the source."""

    def __init__(self, config: AgentConfig, zfs: Zfs, stop: threading.Event,
                 progress: ProgressFactory | None = None) -> None:
        self.config = config
        self.zfs = zfs
        self.stop = stop
        self._progress = progress

    # --- what would run ---------------------------------------------------------------------

    def commands(self, action: Action) -> list[str]:
        """The exact commands of this action, one shell-quoted line each (for --dry-run)."""
        if action.action_type == "rollback":
            return [shlex.join(self._rollback_argv(action))]
        if action.action_type == "rename":
            return [shlex.join(self._rename_argv(action))]
        lines = []
        if self.zfs.resume_token(action.target_dataset) is not None:
            lines.append(f"# first: resume the interrupted receive of {action.target_dataset} "
                         "(zfs send -t TOKEN), or abort it (zfs receive -A)")
        if action.action_type == "full_send":
            lines += [shlex.join(self.zfs.create_parent_argv(p))
                      for p in self.zfs.missing_parents(action.target_dataset)]
        if action.rollback_to is not None:
            lines.append(shlex.join(self._plain_rollback_argv(action)))
        send, receive = self._pull_argvs(action)
        lines.append(f"{shlex.join(send)} | {shlex.join(receive)}")
        lines += [shlex.join(argv) for argv in self._hold_argvs(action)]
        return lines

    def _rollback_argv(self, action: Action) -> tuple[str, ...]:
        # `rollback -r` destroys the target's snapshots after the base: validate.py only lets
        # it through in a `rollback` action, which the witness issues after an admin allowed it.
        assert action.rollback_to is not None
        snap = zfsmod.snapshot_arg(action.target_dataset, action.rollback_to)
        return self.zfs.argv("rollback", "-r", snap)

    def _plain_rollback_argv(self, action: Action) -> tuple[str, ...]:
        assert action.rollback_to is not None
        # No -r: zfs refuses when newer snapshots exist, so this only discards changes made
        # since the base ("destination has been modified since most recent snapshot").
        return self.zfs.argv("rollback", zfsmod.snapshot_arg(action.target_dataset,
                                                            action.rollback_to))

    def _rename_argv(self, action: Action) -> tuple[str, ...]:
        assert action.rename_to is not None
        return self.zfs.argv("rename", zfsmod.dataset_arg(action.target_dataset),
                             zfsmod.dataset_arg(action.rename_to))

    def _remote(self, action: Action, argv: Sequence[str]) -> tuple[str, ...]:
        assert action.source is not None
        return ssh_argv(self.config, action.source, argv)

    def _pull_argvs(self, action: Action) -> tuple[tuple[str, ...], tuple[str, ...]]:
        assert action.snapshot_name is not None
        send = zfsmod.send_argv(action.source_zfs, action.source_dataset, action.snapshot_name,
                                action.incremental_base, action.include_intermediate,
                                action.send_flags)
        receive = self.zfs.argv("receive", *action.receive_flags,
                                zfsmod.dataset_arg(action.target_dataset))
        return self._remote(action, send), receive

    def _hold_argvs(self, action: Action) -> list[tuple[str, ...]]:
        """Hold the new base on both sides, release the old one (the base moves)."""
        if not (self.config.holds and self.zfs.capabilities().holds):
            return []
        new, old = action.snapshot_name, action.incremental_base
        assert new is not None
        local, remote = self.config.hold_tag, f"{self.config.hold_tag}:{self.config.system_id}"
        src = action.source_zfs
        argvs = [self.zfs.hold_argv(local, action.target_dataset, new),
                 self._remote(action, zfsmod.hold_argv(src, remote, action.source_dataset, new))]
        if old is not None and old != new:
            argvs += [
                self.zfs.release_argv(local, action.target_dataset, old),
                self._remote(action, zfsmod.release_argv(src, remote, action.source_dataset,
                                                         old)),
            ]
        return argvs

    # --- running ----------------------------------------------------------------------------

    def run(self, action: Action) -> Done:
        if action.action_type == "rollback":
            self._local(self._rollback_argv(action))
            return Done()
        if action.action_type == "rename":
            self._local(self._rename_argv(action))
            return Done()
        return self._transfer(action)

    def _local(self, argv: Sequence[str]) -> None:
        try:
            self.zfs.run(argv)
        except ZfsError as exc:
            raise ActionFailed(str(exc)) from None

    def _transfer(self, action: Action) -> Done:
        if action.source is None:
            raise ActionFailed(f"cannot pull: {action.reason or 'the source is not reachable'}")
        done = Done()
        if self._resume(action, done):
            return done
        if action.action_type == "full_send":
            for parent in self.zfs.missing_parents(action.target_dataset):
                log.info("creating missing parent %s (unmounted)", parent)
                self._local(self.zfs.create_parent_argv(parent))
        if action.rollback_to is not None:
            self._local(self._plain_rollback_argv(action))
        send, receive = self._pull_argvs(action)
        result = self._pipe(action, send, receive)
        done.bytes_moved += result.bytes
        if not result.ok and not self._received_anyway(action, result):
            raise ActionFailed(result.message(), done.bytes_moved)
        self._move_holds(action, done)
        return done

    def _received_anyway(self, action: Action, result: pipeline.Result) -> bool:
        """ssh can exit 255 while tearing down a connection whose stream arrived whole.

        ``zfs receive`` exiting 0 means it checked the complete stream; if the snapshot is now
        on the target, the transfer worked and only the messenger complained.
        """
        if result.timed_out or result.cancelled or result.returncodes[-1] != 0:
            return False
        if not action.snapshot_name:
            return False
        if not self.zfs.snapshot_exists(action.target_dataset, action.snapshot_name):
            return False
        log.warning("%s: %s, but zfs receive succeeded and the snapshot arrived; counted as done",
                    action.describe(), result.message())
        return True

    def _pipe(self, action: Action, send: Sequence[str],
              receive: Sequence[str]) -> pipeline.Result:
        assert action.source is not None
        log.info("pulling %s: %s | %s", action.describe(), shlex.join(send), shlex.join(receive))
        progress = self._progress(action) if self._progress else None
        options = pipeline.Options(
            timeout=self.config.transfer_timeout_seconds, cancel=self.stop, progress=progress,
            bandwidth_limit=self.config.bandwidth_limit,
            labels=(f"ssh/zfs send on {action.source.label()}", "zfs receive"),
        )
        try:
            return self.zfs.pipe_from(send, receive, options)
        except OSError as exc:
            raise ActionFailed(f"cannot start the transfer: {exc}") from None
        finally:
            close = getattr(progress, "close", None)
            if close is not None:
                close()

    def _move_holds(self, action: Action, done: Done) -> None:
        # A failed hold never fails the sync: it only protects against pruning, and the
        # witness's protected-snapshots list (may-destroy) protects the base as well.
        for argv in self._hold_argvs(action):
            result = self._run_quiet(argv)
            benign = ("tag already exists", "no such tag")
            if result.returncode != 0 and not any(b in result.stderr for b in benign):
                note = f"{shlex.join(argv)}: {result.stderr.strip()[-200:]}"
                log.warning("hold/release failed (the sync itself succeeded): %s", note)
                done.notes.append(note)

    def _run_quiet(self, argv: Sequence[str]) -> zfsmod.Completed:
        """A command whose failure the caller judges: local zfs, or ssh to the source."""
        if argv[0] == self.zfs.path:
            return self.zfs.run(argv, check=False)
        return run_process(argv, 120)

    def _resume(self, action: Action, done: Done) -> bool:
        """Finish an interrupted receive (``receive -s``) first, or abort it when the source
        can no longer send from its token. True when the action's snapshot has arrived."""
        token = self.zfs.resume_token(action.target_dataset)
        if token is None:
            return False
        check = self._run_quiet(self._remote(action, zfsmod.resume_send_argv(
            action.source_zfs, token, dry_run=True)))
        if check.returncode == SSH_FAILED:
            raise ActionFailed(f"cannot reach the source to resume: {check.stderr.strip()}")
        if check.returncode != 0:
            log.warning("%s: the interrupted receive cannot be resumed (%s); aborting it with "
                        "zfs receive -A", action.target_dataset, check.stderr.strip()[-200:])
            self._local(self.zfs.receive_abort_argv(action.target_dataset))
            return False
        log.info("%s: resuming an interrupted receive", action.target_dataset)
        send = self._remote(action, zfsmod.resume_send_argv(action.source_zfs, token))
        receive = self.zfs.argv("receive", "-s", "-u", zfsmod.dataset_arg(action.target_dataset))
        result = self._pipe(action, send, receive)
        done.bytes_moved += result.bytes
        if not result.ok:
            raise ActionFailed(f"resuming failed: {result.message()}", done.bytes_moved)
        assert action.snapshot_name is not None
        if self.zfs.snapshot_exists(action.target_dataset, action.snapshot_name):
            self._move_holds(action, done)
            return True
        return False
