"""Hypothesis over the name validators (DESIGN.md §5): random text, and names from the grammar.

- Any text, including control characters and lone surrogates, is either returned unchanged
  or refused with ``InvalidName``: nothing else escapes.
- Whatever is accepted obeys the rules: only the allowed characters, no empty component,
  no component starting with ``-``, no ``.``/``..`` component, at most 255 bytes, a pool
  that starts with a letter and is not a reserved word.
- Whatever is accepted survives ``shlex.join``/``shlex.split`` unchanged, alone and as
  part of a command line, and can never be read as an option.
- Conversely, every name the grammar allows is accepted.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable

from hypothesis import example, given, settings
from hypothesis import strategies as st

from zfs_sync.domain import names
from zfs_sync.domain.names import InvalidName

ZFS_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.: -"
# Characters a shell gives meaning to, plus what ZFS reserves ('#', '%').
SHELL_META = set("'\"`;$|&<>()[]{}*?!~#%\\\n\r\t=^")
COMPONENT = re.compile(r"[A-Za-z0-9_.: -]+")
RESERVED = ("mirror", "raidz", "draid", "spare", "log", "cache", "special", "dedup")

NAME_VALIDATORS: dict[str, Callable[[str], object]] = {
    "pool": names.validate_pool_name,
    "dataset": names.validate_dataset_name,
    "relative": names.validate_relative_dataset,
    "snapshot": names.validate_snapshot_name,
    "full_snapshot": names.validate_full_snapshot,
    "dataset_glob": names.validate_dataset_glob,
    "snapshot_glob": names.validate_snapshot_glob,
    "hostname": names.validate_hostname,
    "ssh_hostname": names.validate_ssh_hostname,
    "ssh_user": names.validate_ssh_user,
    "command_path": names.validate_command_path,
}

# Any text: every Unicode category, surrogates included (JSON "\ud800" decodes to one),
# mixed with the characters the grammar is about so that near-misses are common too.
any_char = st.characters(codec=None, categories=None)
near_miss = st.sampled_from(list(ZFS_CHARS + "/@#-.") + sorted(SHELL_META) + ["\x00", "é"])
any_text = st.text(st.one_of(any_char, near_miss), max_size=300)


def byte_length(value: str) -> int:
    return len(value.encode("utf-8", "surrogatepass"))


def assert_components_ok(value: str) -> None:
    assert not value.startswith("/") and not value.endswith("/")
    for component in value.split("/"):
        assert COMPONENT.fullmatch(component), (value, component)
        assert not component.startswith("-")
        assert component not in (".", "..")


def assert_pool_ok(pool: str) -> None:
    assert pool[0].isascii() and pool[0].isalpha()
    assert not pool.lower().startswith(RESERVED)


def assert_shell_safe(*values: str) -> None:
    for value in values:
        assert not SHELL_META & set(value), value
        assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)
        assert not value.startswith("-")
        assert shlex.split(shlex.join([value])) == [value]
    argv = ["zfs", "send", "-I", *values]
    assert shlex.split(shlex.join(argv)) == argv


@settings(max_examples=300)
@given(kind=st.sampled_from(sorted(NAME_VALIDATORS)), value=any_text)
@example(kind="pool", value="tank\ud800")
@example(kind="dataset", value="tank/" + "\udc00" * 200)
@example(kind="full_snapshot", value="tank/a@\ud800")
def test_random_text_is_accepted_unchanged_or_refused(kind: str, value: str) -> None:
    try:
        result = NAME_VALIDATORS[kind](value)
    except InvalidName as exc:
        assert str(exc)  # the message says why
        return
    assert result == (names.validate_full_snapshot(value) if kind == "full_snapshot" else value)


@settings(max_examples=500)
@given(value=any_text)
def test_accepted_zfs_names_obey_the_rules(value: str) -> None:
    for kind in ("pool", "dataset", "relative", "snapshot"):
        try:
            NAME_VALIDATORS[kind](value)
        except InvalidName:
            continue
        assert byte_length(value) <= names.MAX_NAME_LEN
        assert_components_ok(value)
        assert_shell_safe(value)
        assert "@" not in value
        if kind in ("pool", "dataset"):
            assert_pool_ok(value.split("/")[0])
        if kind in ("pool", "snapshot"):
            assert "/" not in value


# -- names from the grammar ------------------------------------------------------------------

component = st.text(st.sampled_from(ZFS_CHARS), min_size=1, max_size=20).filter(
    lambda c: not c.startswith("-") and c not in (".", "..")
)
pool = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    st.text(st.sampled_from(ZFS_CHARS), max_size=15),
).filter(
    lambda p: not p.lower().startswith(RESERVED) and not re.match(r"c[0-9]", p)
)
dataset = st.builds(
    lambda p, parts: "/".join([p, *parts]), pool, st.lists(component, max_size=6)
).filter(lambda d: byte_length(d) <= names.MAX_NAME_LEN)
snapshot = component


@settings(max_examples=300)
@given(dataset=dataset, snap=snapshot)
def test_names_from_the_grammar_are_accepted_and_round_trip(dataset: str, snap: str) -> None:
    assert names.validate_dataset_name(dataset) == dataset
    assert names.validate_pool_name(names.pool_of(dataset)) == names.pool_of(dataset)
    assert names.validate_snapshot_name(snap) == snap
    full = f"{dataset}@{snap}"
    if byte_length(full) <= names.MAX_NAME_LEN:
        assert names.validate_full_snapshot(full) == (dataset, snap)
    assert_shell_safe(dataset, snap, full)
    root, _, logical = dataset.partition("/")
    if logical:
        assert names.validate_relative_dataset(logical) == logical
        assert names.logical_dataset(dataset, root) == logical
        assert names.join_dataset(root, logical) == dataset


@settings(max_examples=200)
@given(value=st.text(st.sampled_from(ZFS_CHARS + "/"), min_size=256, max_size=400))
def test_names_over_255_bytes_are_refused(value: str) -> None:
    for kind in ("pool", "dataset", "relative", "snapshot", "full_snapshot"):
        try:
            NAME_VALIDATORS[kind](value)
        except InvalidName:
            continue
        raise AssertionError(f"{kind} accepted {len(value)} bytes")
