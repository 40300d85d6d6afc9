"""The only module that runs ``zfs``: listing, capability detection, and the argv of every
zfs command the agent runs (locally, or on a source through ssh).

Everything is an argv list, never a shell line. Every name that goes into an argv is checked
by ``zfs_sync.domain.names`` and may not start with ``-``, so it cannot be read as an option.
The binary is swappable (``zfs_path``), which is how the unit tests run a fake ``zfs``.

ZFS versions differ: OpenZFS prints raw numbers with ``zfs list -p``; zfs-fuse (pool version
23) has no ``list -p`` (its ``-o guid`` prints ``10.3E``) but has ``zfs get -H -p``; only newer
versions have resumable receives, raw and compressed sends, bookmarks, ``create -u``.
``Zfs.capabilities()`` reads them from the usage text that ``zfs -?`` prints, which every
version has and which touches no pool; ``zfs_output.py`` parses what zfs prints.
"""

from __future__ import annotations

import logging
import re
import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from zfs_sync.agent import pipeline
from zfs_sync.agent.zfs_output import (
    BASE_PROPS,
    Capabilities,
    Dataset,
    Snapshot,
    build_datasets,
    list_properties,
    parse_get_output,
    parse_list_output,
    parse_usage,
    value_or_none,
)
from zfs_sync.domain import names

__all__ = [
    "BASE_PROPS", "Capabilities", "Completed", "Dataset", "Snapshot", "Zfs", "ZfsError",
    "build_datasets", "data_arg", "dataset_arg", "hold_argv", "list_properties",
    "parse_get_output", "parse_list_output", "parse_usage", "release_argv",
    "resume_send_argv", "run_process", "send_argv", "snapshot_arg",
]

log = logging.getLogger("zfs_sync.agent.zfs")

Argv = tuple[str, ...]
# LC_ALL=C: the agent recognises a few zfs messages ("does not exist", "invalid option").
ENV = {"LC_ALL": "C", "LANG": "C"}
_TOKEN = re.compile(r"[0-9a-fA-F-]{1,65536}")


class ZfsError(RuntimeError):
    """A zfs command failed; ``str()`` is one readable line with zfs's own message."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr
        detail = " ".join(stderr.strip().split("\n")[-3:]) or "no error output"
        super().__init__(f"`{shlex.join(argv)}` failed (exit {returncode}): {detail}")


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


Runner = Callable[[Sequence[str], "float | None"], Completed]


def run_process(argv: Sequence[str], timeout: float | None = None) -> Completed:
    """Run one argv (no shell), stdin closed, output captured."""
    import os

    env = {**os.environ, **ENV}
    try:
        done = subprocess.run(
            list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True,
            errors="replace", timeout=timeout, env=env, check=False,
        )
    except FileNotFoundError:
        return Completed(127, "", f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return Completed(124, "", f"timed out after {timeout} s")
    return Completed(done.returncode, done.stdout, done.stderr)


# --- argv builders (also used for the source's commands, sent through ssh) -----------------


def data_arg(value: str) -> str:
    """A value taken from data is never an option."""
    if value == "" or value.startswith("-") or "\x00" in value or "\n" in value:
        raise ValueError(f"refusing command argument {value!r}")
    return value


def dataset_arg(dataset: str) -> str:
    return data_arg(names.validate_dataset_name(dataset))


def snapshot_arg(dataset: str, snapshot: str) -> str:
    names.validate_snapshot_name(snapshot)
    return data_arg(f"{dataset_arg(dataset)}@{snapshot}")


def send_argv(
    zfs_path: str, dataset: str, snapshot: str, base: str | None = None,
    intermediate: bool = False, flags: Sequence[str] = (),
) -> Argv:
    argv = [names.validate_command_path(zfs_path), "send", *flags]
    if base is not None:
        argv += ["-I" if intermediate else "-i", snapshot_arg(dataset, base)]
    return (*argv, snapshot_arg(dataset, snapshot))


def resume_send_argv(zfs_path: str, token: str, dry_run: bool = False) -> Argv:
    if not _TOKEN.fullmatch(token):
        raise ValueError("a receive_resume_token is hex digits and '-' only")
    flags = ("-n", "-v") if dry_run else ()
    return (names.validate_command_path(zfs_path), "send", *flags, "-t", data_arg(token))


def hold_argv(zfs_path: str, tag: str, dataset: str, snapshot: str) -> Argv:
    return (names.validate_command_path(zfs_path), "hold", data_arg(tag),
            snapshot_arg(dataset, snapshot))


def release_argv(zfs_path: str, tag: str, dataset: str, snapshot: str) -> Argv:
    return (names.validate_command_path(zfs_path), "release", data_arg(tag),
            snapshot_arg(dataset, snapshot))


class Zfs:
    """The local zfs: cached capabilities, listing, and the commands the executor runs."""

    def __init__(self, zfs_path: str = "zfs", runner: Runner = run_process,
                 timeout: float = 600.0) -> None:
        self.path = names.validate_command_path(zfs_path)
        self._runner = runner
        self._timeout = timeout
        self._caps: Capabilities | None = None

    # running

    def argv(self, *args: str) -> Argv:
        return (self.path, *args)

    def run(self, argv: Sequence[str], check: bool = True) -> Completed:
        if argv[0] != self.path:
            raise ValueError(f"not a local zfs command: {argv!r}")
        log.debug("running %s", shlex.join(argv))
        done = self._runner(argv, self._timeout)
        if check and done.returncode != 0:
            raise ZfsError(argv, done.returncode, done.stderr)
        return done

    def pipe_from(
        self, source: Sequence[str], receive: Sequence[str], options: pipeline.Options
    ) -> pipeline.Result:
        """``source | zfs receive ...``: the pull (``source`` is the ssh stage)."""
        if receive[0] != self.path or receive[1] not in ("receive", "recv"):
            raise ValueError(f"not a local zfs receive: {receive!r}")
        return pipeline.run_pipeline(source, receive, options)

    # reading

    def capabilities(self) -> Capabilities:
        if self._caps is None:
            done = self._runner((self.path, "-?"), self._timeout)
            if done.returncode == 127:
                raise ZfsError((self.path,), 127, done.stderr)
            self._caps = parse_usage(done.stdout + "\n" + done.stderr)
        return self._caps

    def version(self) -> str | None:
        if not self.capabilities().has_version:
            return None
        done = self._runner((self.path, "version"), self._timeout)
        first = done.stdout.strip().splitlines()[:1]
        return first[0][:64] if done.returncode == 0 and first else None

    def list_datasets(
        self, roots: Sequence[str] | None = None, wanted: Callable[[str], bool] = lambda _: True
    ) -> list[Dataset]:
        """Every filesystem/volume under ``roots`` (None = all) with its snapshots."""
        if roots is not None:
            for root in roots:
                dataset_arg(root)
        try:
            rows = self._rows(roots)
        except ZfsError as exc:
            if roots is None or "does not exist" not in exc.stderr:
                raise
            rows = [row for root in roots for row in self._rows_if_exists(root)]
        return build_datasets(rows, wanted)

    def _rows_if_exists(self, root: str) -> list[dict[str, str | None]]:
        try:
            return self._rows([root])
        except ZfsError as exc:
            if "does not exist" in exc.stderr:
                return []
            raise

    def _rows(self, roots: Sequence[str] | None) -> list[dict[str, str | None]]:
        caps = self.capabilities()
        props = list_properties(caps)
        targets = ["-r", *roots] if roots is not None else []
        if caps.list_parsable:
            argv = self.argv("list", "-H", "-p", "-o", ",".join(props),
                             "-t", "filesystem,volume,snapshot", *targets)
            done = self.run(argv, check=False)
            if done.returncode == 0:
                return parse_list_output(done.stdout, props)
            if "invalid option" not in done.stderr:
                raise ZfsError(argv, done.returncode, done.stderr)
            log.info("zfs list has no -p here; reading with zfs get -H -p instead")
        # zfs-fuse and other old versions: `zfs get -r` prints raw numbers with -p.
        argv = self.argv("get", "-H", "-p", "-r", "-o", "name,property,value",
                         ",".join(props[1:]), *(roots or ()))
        return parse_get_output(self.run(argv).stdout)

    def exists(self, name: str) -> bool:
        """Whether a dataset (or ``ds@snap``) exists; other failures raise."""
        argv = self.argv("list", "-H", "-o", "name", data_arg(name))
        done = self.run(argv, check=False)
        if done.returncode == 0:
            return True
        if "does not exist" in done.stderr:
            return False
        raise ZfsError(argv, done.returncode, done.stderr)

    def resume_token(self, dataset: str) -> str | None:
        if not self.capabilities().resumable_receive or not self.exists(dataset_arg(dataset)):
            return None
        argv = self.argv("get", "-H", "-p", "-o", "value", "receive_resume_token",
                         dataset_arg(dataset))
        return value_or_none(self.run(argv).stdout.strip())

    # argv of local changes (the executor runs them, or prints them with --dry-run)

    def create_parent_argv(self, dataset: str) -> Argv:
        """Create one missing parent, unmounted: ``canmount=off`` is not inherited, so the
        children received under it still mount normally."""
        flags = ("-p", "-u") if self.capabilities().create_unmounted else ("-p",)
        return self.argv("create", *flags, "-o", "canmount=off", dataset_arg(dataset))

    def missing_parents(self, dataset: str) -> list[str]:
        """Ancestors of ``dataset`` that do not exist, top-down (never the pool itself)."""
        parts = dataset_arg(dataset).split("/")
        ancestors = ["/".join(parts[:i]) for i in range(2, len(parts))]
        missing = []
        for ancestor in reversed(ancestors):
            if self.exists(dataset_arg(ancestor)):
                break
            missing.append(ancestor)
        return list(reversed(missing))

    def receive_abort_argv(self, dataset: str) -> Argv:
        return self.argv("receive", "-A", dataset_arg(dataset))

    def hold_argv(self, tag: str, dataset: str, snapshot: str) -> Argv:
        return hold_argv(self.path, tag, dataset, snapshot)

    def release_argv(self, tag: str, dataset: str, snapshot: str) -> Argv:
        return release_argv(self.path, tag, dataset, snapshot)

    def snapshot_exists(self, dataset: str, snapshot: str) -> bool:
        return self.exists(snapshot_arg(dataset, snapshot))
