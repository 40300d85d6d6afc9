"""Hypothesis over the agent's parser of ``zfs list -H -p`` and ``zfs get -H -p`` output.

- Random tab-separated text, truncated output and odd values (zfs-fuse's ``10.3E``, ``-``,
  numbers past 2^64, digits that are not ASCII) never raise anything but the parser's
  documented ``ValueError`` for a malformed line, and ``build_datasets`` never raises.
- Output printed from random datasets and snapshots (valid ZFS names, spaces included)
  parses back to exactly those values, in both dialects.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import example, given, settings
from hypothesis import strategies as st

from zfs_sync.agent.zfs_output import (
    BASE_PROPS,
    Capabilities,
    Dataset,
    Snapshot,
    build_datasets,
    list_properties,
    parse_get_output,
    parse_list_output,
)

ALL_PROPS = list_properties(Capabilities(holds=True, raw_send=True, resumable_receive=True))
NUMERIC = ("guid", "createtxg", "creation", "used", "referenced", "userrefs")
ODD_VALUES = ["10.3E", "-", "", "9" * 5000, "\u00b2", "\u0661\u0662", str(2**64), "-1",
              "1e3", " 12", "0x10", "12 ", "+5", "\x00"]
ZFS_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.: -"
U64 = st.integers(min_value=0, max_value=2**64 - 1)

cell = st.one_of(st.text(st.characters(exclude_characters="\t\n\r"), max_size=12),
                 st.sampled_from(ODD_VALUES), U64.map(str))
line = st.lists(cell, min_size=0, max_size=len(ALL_PROPS) + 2).map("\t".join)
random_output = st.lists(line, max_size=8).map("\n".join)


def check_rows(rows: list[dict[str, str | None]]) -> None:
    """Whatever parsed, building datasets from it works and yields sane numbers."""
    for dataset in build_datasets(rows):
        for snap in dataset.snapshots:
            for prop in NUMERIC:
                value = getattr(snap, prop)
                assert value is None or 0 <= value < 2**64


@settings(max_examples=200)
@given(text=random_output, props=st.sampled_from([BASE_PROPS, tuple(ALL_PROPS)]))
@example(text="tank/a@s\tsnapshot\t10.3E\t5\t\u00b2\t" + "9" * 5000 + "\t-",
         props=BASE_PROPS)
def test_random_list_output_parses_or_raises_value_error(
    text: str, props: tuple[str, ...]
) -> None:
    try:
        rows = parse_list_output(text, props)
    except ValueError as exc:
        assert "unexpected zfs list line" in str(exc)
        return
    check_rows(rows)


@settings(max_examples=200)
@given(text=random_output)
@example(text="tank/a@s\ttype\tsnapshot\ntank/a@s\tguid\t" + "9" * 5000)
def test_random_get_output_parses_or_raises_value_error(text: str) -> None:
    try:
        rows = parse_get_output(text)
    except ValueError as exc:
        assert "unexpected zfs get line" in str(exc)
        return
    check_rows(rows)


# -- round trip from random pools ------------------------------------------------------------


@dataclass(frozen=True)
class Made:
    datasets: list[Dataset]

    def rows(self) -> list[dict[str, str]]:
        """What zfs prints, one dict per line, in ``ALL_PROPS`` terms ("-" for none)."""
        out = []
        for ds in self.datasets:
            out.append({"name": ds.name, "type": ds.type, "guid": "1", "createtxg": "1",
                        "creation": "1", "used": "1", "referenced": "1", "userrefs": "-",
                        "encryption": "aes-256-gcm" if ds.encryption else "off",
                        "receive_resume_token": ds.receive_resume_token or "-"})
            for s in ds.snapshots:
                out.append({"name": s.full_name, "type": "snapshot",
                            **{p: _text(getattr(s, p)) for p in NUMERIC},
                            "encryption": "-", "receive_resume_token": "-"})
        return out

    def list_output(self) -> str:
        return "".join("\t".join(row[p] for p in ALL_PROPS) + "\n" for row in self.rows())

    def get_output(self) -> str:
        return "".join(f"{row['name']}\t{p}\t{row[p]}\n" for row in self.rows()
                       for p in ALL_PROPS[1:])


def _text(value: int | None) -> str:
    return "-" if value is None else str(value)


component = st.text(st.sampled_from(ZFS_CHARS), min_size=1, max_size=12).filter(
    lambda c: not c.startswith("-") and c not in (".", "..")
)
pool_name = st.builds(
    lambda first, rest: first + rest, st.sampled_from("abcdefghijklmnopqrstuvwxyz"),
    st.text(st.sampled_from(ZFS_CHARS), max_size=10),
).filter(
    lambda p: not p.startswith(("mirror", "raidz", "draid", "spare", "log", "cache",
                                "special", "dedup"))
)
maybe_u64 = st.one_of(st.none(), U64)
hex_digits = st.text(st.sampled_from("0123456789abcdef"), min_size=1, max_size=24)
token = st.builds(lambda a, b: f"1-{a}-{b}", hex_digits, hex_digits)  # like "1-e604ea4bf-e0"


@st.composite
def pools(draw: st.DrawFn) -> Made:
    pool = draw(pool_name)
    children = draw(st.lists(st.lists(component, min_size=1, max_size=3).map("/".join),
                             max_size=4, unique=True))
    datasets = []
    for name in sorted({pool, *(f"{pool}/{child}" for child in children)}):
        snap_names = draw(st.lists(component, max_size=5, unique=True))
        snaps = tuple(
            Snapshot(name, snap, draw(maybe_u64), draw(maybe_u64), draw(maybe_u64),
                     draw(maybe_u64), draw(maybe_u64), draw(maybe_u64))
            for snap in snap_names
        )
        datasets.append(Dataset(
            name, draw(st.sampled_from(["filesystem", "volume"])), draw(st.booleans()),
            draw(st.one_of(st.none(), token)),
            snaps,
        ))
    return Made(datasets)


def same(parsed: list[Dataset], made: Made) -> None:
    assert [d.name for d in parsed] == [d.name for d in made.datasets]
    for got, want in zip(parsed, made.datasets, strict=True):
        assert (got.type, got.encryption, got.receive_resume_token) == (
            want.type, want.encryption, want.receive_resume_token)
        assert sorted(got.snapshots, key=repr) == sorted(want.snapshots, key=repr)
        order = [(s.createtxg or 0, s.creation or 0, s.name) for s in got.snapshots]
        assert order == sorted(order)


@settings(max_examples=100)
@given(made=pools())
def test_list_output_round_trips(made: Made) -> None:
    same(build_datasets(parse_list_output(made.list_output(), ALL_PROPS)), made)


@settings(max_examples=100)
@given(made=pools())
def test_get_output_round_trips(made: Made) -> None:
    same(build_datasets(parse_get_output(made.get_output())), made)


@settings(max_examples=100)
@given(made=pools(), cut=st.integers(min_value=0, max_value=10_000), dialect=st.booleans())
def test_truncated_output_parses_or_raises_value_error(made: Made, cut: int,
                                                       dialect: bool) -> None:
    text = made.list_output() if dialect else made.get_output()
    text = text[: cut % (len(text) + 1)]
    try:
        rows = parse_list_output(text, ALL_PROPS) if dialect else parse_get_output(text)
    except ValueError as exc:
        assert "unexpected zfs" in str(exc)
        return
    check_rows(rows)
