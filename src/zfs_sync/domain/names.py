"""ZFS name grammar, and the other names that can reach a command line.

This module is the one place where names are judged. Every input path (API schemas, the
agent's config, the planner's command builder) calls these functions, so a name that could
break out of shell quoting or be read as an option never gets stored, let alone executed.

The grammar follows OpenZFS's ``zfs_namecheck.c``: components of letters, digits, ``_``,
``-``, ``.``, ``:`` and space; no empty component; no ``.``/``..`` component; a full name
shorter than 256 bytes. We are stricter in one way that matters for safety: no component may
start with ``-``, so a name can never be taken for a command-line flag.
"""

from __future__ import annotations

import re
from functools import lru_cache

MAX_NAME_LEN = 255  # ZFS_MAX_DATASET_NAME_LEN (256) minus the terminating NUL
# Pool, dataset and host names that passed a check are remembered (a fleet repeats the same few
# thousand; snapshot names are new every hour, so they are not); a refused name raises and is
# not cached.
CHECKED_CACHE = 65536
_COMPONENT = re.compile(r"[A-Za-z0-9_.: -]+")
_GLOB_COMPONENT = re.compile(r"[A-Za-z0-9_.: \-*?\[\]!]+")
_HOSTNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_SSH_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]*|\[[0-9A-Fa-f:.]+\]")
_SSH_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\$?")
_COMMAND_PATH = re.compile(r"/?[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*")
_RESERVED_POOLS = ("mirror", "raidz", "draid", "spare", "log", "cache", "special", "dedup")


class InvalidName(ValueError):
    """A name that ZFS (or a shell) would not accept. The message says why."""


def _check_component(component: str, what: str, pattern: re.Pattern[str] = _COMPONENT) -> None:
    if component == "":
        raise InvalidName(f"{what} has an empty component (a leading, trailing or double '/')")
    if not pattern.fullmatch(component):
        bad = sorted({c for c in component if not pattern.fullmatch(c)})
        shown = ", ".join(repr(c) for c in bad)
        raise InvalidName(
            f"{what} contains characters ZFS does not allow: {shown} "
            "(allowed: letters, digits, '_', '-', '.', ':' and space)"
        )
    if component.startswith("-"):
        raise InvalidName(f"{what} has a component starting with '-'")
    if component in (".", ".."):
        raise InvalidName(f"{what} has a '.' or '..' component")


def _check_length(value: str, what: str) -> None:
    # "surrogatepass": a lone surrogate (JSON "\ud800", YAML "\ud800") must get InvalidName
    # from the character check, not a UnicodeEncodeError from here.
    if len(value.encode("utf-8", "surrogatepass")) > MAX_NAME_LEN:
        raise InvalidName(f"{what} is longer than {MAX_NAME_LEN} bytes")


@lru_cache(maxsize=CHECKED_CACHE)
def validate_pool_name(value: str) -> str:
    """A pool name: one component, starting with a letter, not a reserved vdev word."""
    _check_length(value, "pool name")
    if "/" in value or "@" in value:
        raise InvalidName("pool name must be a single component without '/' or '@'")
    _check_component(value, "pool name")
    if not value[0].isascii() or not value[0].isalpha():
        raise InvalidName("pool name must start with a letter")
    lowered = value.lower()
    if any(lowered.startswith(word) for word in _RESERVED_POOLS):
        raise InvalidName(f"pool name {value!r} is reserved by ZFS")
    if re.match(r"c[0-9]", value):
        raise InvalidName("pool name may not look like a disk name (c0, c1, ...)")
    return value


@lru_cache(maxsize=CHECKED_CACHE)
def validate_dataset_name(value: str) -> str:
    """A full dataset name such as ``tank/data/vm1`` (the first component is the pool)."""
    _check_length(value, "dataset name")
    if "@" in value or "#" in value:
        raise InvalidName("dataset name may not contain '@' or '#' (give the snapshot separately)")
    components = value.split("/")
    for component in components:
        _check_component(component, "dataset name")
    validate_pool_name(components[0])
    return value


def validate_relative_dataset(value: str) -> str:
    """A dataset path without its pool (a logical dataset such as ``data/vm1``)."""
    _check_length(value, "dataset path")
    if "@" in value or "#" in value:
        raise InvalidName("dataset path may not contain '@' or '#'")
    for component in value.split("/"):
        _check_component(component, "dataset path")
    return value


def validate_snapshot_name(value: str) -> str:
    """The part of a snapshot name after ``@``."""
    _check_length(value, "snapshot name")
    if "/" in value or "@" in value or "#" in value:
        raise InvalidName("snapshot name (the part after '@') may not contain '/', '@' or '#'")
    _check_component(value, "snapshot name")
    return value


def validate_full_snapshot(value: str) -> tuple[str, str]:
    """``pool/ds@snap`` -> (dataset, snapshot name)."""
    _check_length(value, "snapshot name")
    dataset, sep, snap = value.partition("@")
    if not sep:
        raise InvalidName("full snapshot name must contain '@'")
    return validate_dataset_name(dataset), validate_snapshot_name(snap)


def validate_dataset_glob(value: str) -> str:
    """A glob over logical dataset names (``data/*``, ``vm?``)."""
    _check_length(value, "dataset pattern")
    for component in value.split("/"):
        _check_component(component, "dataset pattern", _GLOB_COMPONENT)
    return value


def validate_snapshot_glob(value: str) -> str:
    """A glob over snapshot names (``autosnap_*_daily``)."""
    _check_length(value, "snapshot pattern")
    if "/" in value or "@" in value:
        raise InvalidName("snapshot pattern may not contain '/' or '@'")
    _check_component(value, "snapshot pattern", _GLOB_COMPONENT)
    return value


def validate_hostname(value: str) -> str:
    """A system's hostname: letters, digits, '_', '-', '.' (at most 255 characters)."""
    if not 0 < len(value) <= 255:
        raise InvalidName("hostname must be 1 to 255 characters long")
    if not _HOSTNAME.fullmatch(value):
        raise InvalidName(
            "hostname may contain only letters, digits, '_', '-' and '.', "
            "and must start with a letter, digit or '_'"
        )
    return value


@lru_cache(maxsize=CHECKED_CACHE)
def validate_ssh_hostname(value: str) -> str:
    """A host name or IP address for ssh (``[::1]`` form accepted for IPv6)."""
    if not 0 < len(value) <= 255:
        raise InvalidName("ssh_hostname must be 1 to 255 characters long")
    if not _SSH_HOST.fullmatch(value):
        raise InvalidName(
            "ssh_hostname must be a host name or an IP address "
            "(letters, digits, '_', '-', '.', ':'), not starting with '-'"
        )
    return value


@lru_cache(maxsize=CHECKED_CACHE)
def validate_ssh_user(value: str) -> str:
    """A POSIX user name for ssh."""
    if not 0 < len(value) <= 64 or not _SSH_USER.fullmatch(value):
        raise InvalidName(
            "ssh_user must be a user name of letters, digits, '_', '-', '.' "
            "starting with a letter or '_' (at most 64 characters)"
        )
    return value


@lru_cache(maxsize=CHECKED_CACHE)
def validate_command_path(value: str) -> str:
    """The zfs binary: a bare command (``zfs``) or a path (``/usr/sbin/zfs``)."""
    if not 0 < len(value) <= 255 or not _COMMAND_PATH.fullmatch(value):
        raise InvalidName(
            "zfs_path must be a command name or an absolute path of letters, digits, "
            "'_', '-', '.', '+' and '/'"
        )
    if any(part.startswith("-") or part in (".", "..") for part in value.split("/") if part):
        raise InvalidName("zfs_path may not have components starting with '-' or '.'/'..'")
    return value


def pool_of(dataset: str) -> str:
    return dataset.split("/", 1)[0]


def logical_dataset(dataset: str, root: str) -> str | None:
    """The dataset relative to ``root`` (``tank/data/vm1`` under ``tank`` -> ``data/vm1``).

    The root itself maps to ``""``; a dataset outside the root maps to None.
    """
    if dataset == root:
        return ""
    if dataset.startswith(root + "/"):
        return dataset[len(root) + 1 :]
    return None


def join_dataset(root: str, logical: str) -> str:
    return f"{root}/{logical}" if logical else root
