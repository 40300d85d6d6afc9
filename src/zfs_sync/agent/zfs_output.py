"""What ``zfs`` prints, parsed: the usage text (capabilities) and machine-readable listings.

Pure functions over text, so they are tested with captured output of both dialects:
OpenZFS (``zfs list -H -p``) and zfs-fuse (no ``list -p``; ``zfs get -H -p`` per property).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

BASE_PROPS = ("name", "type", "guid", "createtxg", "creation", "used", "referenced")


# --- capabilities --------------------------------------------------------------------------


@dataclass(frozen=True)
class Capabilities:
    """What this zfs can do. The first six are what the heartbeat reports (DESIGN §7)."""

    compressed_send: bool = False
    raw_send: bool = False
    resumable_receive: bool = False
    receive_o: bool = False
    bookmarks: bool = False
    holds: bool = False
    list_parsable: bool = False  # zfs list -p
    create_unmounted: bool = False  # zfs create -u
    has_version: bool = False  # zfs version

    def report(self) -> dict[str, bool]:
        return {
            "compressed_send": self.compressed_send,
            "raw_send": self.raw_send,
            "resumable_receive": self.resumable_receive,
            "receive_o": self.receive_o,
            "bookmarks": self.bookmarks,
            "holds": self.holds,
        }


def _usage_lines(text: str) -> dict[str, list[str]]:
    """``{command: [its usage lines]}``; continuation lines belong to the line above."""
    found: dict[str, list[str]] = {}
    current: str | None = None
    for raw in text.splitlines():
        if raw.startswith("\t    ") and current is not None:
            found[current][-1] += " " + raw.strip()
            continue
        match = re.match(r"\t([a-z][a-z-]*)\b(.*)", raw)
        current = match.group(1) if match else None
        if match is not None:
            found.setdefault(match.group(1), []).append(match.group(2))
    return found


def _flags(lines: Iterable[str]) -> set[str]:
    flags: set[str] = set()
    for line in lines:
        for group in re.findall(r"\[-([A-Za-z]+)\]", line):
            flags.update(group)
        flags.update(re.findall(r"\[-([A-Za-z]) ", line))
        flags.update(re.findall(r"(?:^|\s)-([A-Za-z])\b", line))
    return flags


def parse_usage(text: str) -> Capabilities:
    usage = _usage_lines(text)
    send, receive = _flags(usage.get("send", [])), _flags(usage.get("receive", []))
    return Capabilities(
        compressed_send="c" in send,
        raw_send="w" in send,
        # Resuming needs all three: receive -s keeps the state, send -t and receive -A use it.
        resumable_receive="s" in receive and "t" in send and "A" in receive,
        receive_o="o" in receive,
        bookmarks="bookmark" in usage,
        holds="hold" in usage and "release" in usage,
        list_parsable="p" in _flags(usage.get("list", [])),
        create_unmounted="u" in _flags(usage.get("create", [])),
        has_version="version" in usage,
    )


# --- listing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    dataset: str
    name: str  # after '@'
    guid: int | None
    createtxg: int | None
    creation: int | None  # epoch seconds
    used: int | None
    referenced: int | None
    userrefs: int | None = None  # holds on it (None: unknown)

    @property
    def full_name(self) -> str:
        return f"{self.dataset}@{self.name}"


@dataclass(frozen=True)
class Dataset:
    name: str
    type: str  # filesystem | volume
    encryption: bool = False
    receive_resume_token: str | None = None
    snapshots: tuple[Snapshot, ...] = field(default=())

    def newest(self) -> Snapshot | None:
        return max(self.snapshots, key=_order, default=None)


def _order(snap: Snapshot) -> tuple[int, int, str]:
    return (snap.createtxg or 0, snap.creation or 0, snap.name)


def list_properties(caps: Capabilities) -> tuple[str, ...]:
    """Only properties this zfs knows: an unknown one makes ``zfs list`` fail outright."""
    extra = []
    if caps.holds:
        extra.append("userrefs")
    if caps.raw_send:  # encryption arrived with raw send (OpenZFS 0.8)
        extra.append("encryption")
    if caps.resumable_receive:
        extra.append("receive_resume_token")
    return BASE_PROPS + tuple(extra)


_UINT64 = re.compile(r"[0-9]{1,20}")


def _number(value: str | None) -> int | None:
    """A raw ``-p`` number, or None for anything else (``-``, zfs-fuse's ``10.3E``).

    ZFS numbers are unsigned 64-bit: ASCII digits only (``"²".isdigit()`` is true, and
    ``int`` refuses it), and nothing longer than 2^64 - 1 (``int`` refuses 4,300 digits).
    """
    if value is None or not _UINT64.fullmatch(value):
        return None
    number = int(value)
    return number if number < 2**64 else None


def value_or_none(raw: str) -> str | None:
    return None if raw in ("-", "") else raw


def parse_list_output(text: str, props: Sequence[str]) -> list[dict[str, str | None]]:
    """``zfs list -H -p -o <props>``: tab-separated (names may hold spaces, never tabs)."""
    rows = []
    for line in text.splitlines():
        if not line:
            continue
        values = line.split("\t")
        if len(values) != len(props):
            raise ValueError(f"unexpected zfs list line: {line!r}")
        # Lengths are equal (checked above); zip(strict=) is 3.10+, and this runs on 3.9.
        pairs = zip(props, values)  # noqa: B905
        rows.append({p: value_or_none(v) if p != "name" else v for p, v in pairs})
    return rows


def parse_get_output(text: str) -> list[dict[str, str | None]]:
    """``zfs get -H -p -o name,property,value``: one line per (dataset, property)."""
    rows: dict[str, dict[str, str | None]] = {}
    for line in text.splitlines():
        if not line:
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise ValueError(f"unexpected zfs get line: {line!r}")
        name, prop, value = parts
        rows.setdefault(name, {"name": name})[prop] = value_or_none(value)
    return list(rows.values())


def build_datasets(
    rows: Iterable[dict[str, str | None]], wanted: Callable[[str], bool] = lambda _: True
) -> list[Dataset]:
    """Rows of any type -> datasets (filesystems and volumes) with their snapshots."""
    snaps: dict[str, list[Snapshot]] = {}
    found: dict[str, dict[str, str | None]] = {}
    for row in rows:
        name = str(row["name"])
        kind = row.get("type")
        if kind == "snapshot":
            dataset, _, snap = name.partition("@")
            snaps.setdefault(dataset, []).append(_snapshot(dataset, snap, row))
        elif kind in ("filesystem", "volume"):
            found[name] = row
    result = []
    for name in sorted(found):
        if not wanted(name):
            continue
        row = found[name]
        token = row.get("receive_resume_token")
        result.append(
            Dataset(
                name,
                str(row.get("type")),
                (row.get("encryption") or "off") != "off",
                token,
                tuple(sorted(snaps.get(name, []), key=_order)),
            )
        )
    return result


def _snapshot(dataset: str, name: str, row: dict[str, str | None]) -> Snapshot:
    return Snapshot(
        dataset, name, _number(row.get("guid")), _number(row.get("createtxg")),
        _number(row.get("creation")), _number(row.get("used")),
        _number(row.get("referenced")), _number(row.get("userrefs")),
    )
