"""agent/zfs.py: capability detection, parsing of both ZFS dialects, argv building."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.agent.conftest import FakeZfs
from zfs_sync.agent import zfs as zfsmod
from zfs_sync.agent.zfs import Capabilities, Completed, Zfs, ZfsError, parse_usage

DATA = Path(__file__).resolve().parent / "data"

# What OpenZFS 2.x prints for
# zfs list -H -p -o name,type,guid,createtxg,creation,used,referenced,userrefs,encryption,
#   receive_resume_token -t filesystem,volume,snapshot -r tank
OPENZFS_LIST = (
    "tank\tfilesystem\t6070845617746593100\t1\t1732600000\t835584\t122880\t-\toff\t-\n"
    "tank/my data\tfilesystem\t7307979308378141161\t7\t1732600001\t307200\t126976\t-\t"
    "aes-256-gcm\t1-e604ea4bf-e0-789c63a2\n"
    "tank/my data@auto 1\tsnapshot\t18446744073709551615\t12\t1732600100\t90112\t118784\t1\t"
    "aes-256-gcm\t-\n"
    "tank/my data@auto 0\tsnapshot\t12487578392663040931\t9\t1732600050\t0\t118784\t0\t"
    "aes-256-gcm\t-\n"
    "tank/vol\tvolume\t55\t20\t1732600200\t1000\t1000\t-\toff\t-\n"
)


def test_openzfs_usage_means_every_capability() -> None:
    caps = parse_usage((DATA / "usage_openzfs.txt").read_text())
    assert caps == Capabilities(
        compressed_send=True, raw_send=True, resumable_receive=True, receive_o=True,
        bookmarks=True, holds=True, list_parsable=True, create_unmounted=True, has_version=True,
    )


def test_zfs_fuse_usage_means_only_holds() -> None:
    """Captured from zfs-fuse 0.7 (pool version 23): no list -p, -c, -w, -s, bookmarks."""
    caps = parse_usage((DATA / "usage_zfs_fuse.txt").read_text())
    assert caps.report() == {
        "compressed_send": False, "raw_send": False, "resumable_receive": False,
        "receive_o": False, "bookmarks": False, "holds": True,
    }
    assert not caps.list_parsable and not caps.create_unmounted and not caps.has_version


def test_openzfs_0_7_has_resume_and_compression_but_not_raw() -> None:
    usage = (
        "\tlist [-Hp] [-r|-d max] [-o property[,...]] [-s property]...\n"
        "\tsend [-DnPpRvLec] [-[iI] snapshot] <snapshot>\n"
        "\tsend [-nvPe] -t <receive_resume_token>\n"
        "\treceive [-vnsFu] [-o <property>=<value>] ... [-x <property>] ...\n"
        "\t    <filesystem|volume|snapshot>\n"
        "\treceive -A <filesystem|volume>\n"
        "\tbookmark <snapshot> <bookmark>\n"
    )
    caps = parse_usage(usage)
    assert caps.resumable_receive and caps.compressed_send and caps.receive_o
    assert not caps.raw_send and not caps.holds
    assert zfsmod.list_properties(caps) == zfsmod.BASE_PROPS + ("receive_resume_token",)


def test_parse_openzfs_list_output() -> None:
    props = zfsmod.list_properties(parse_usage((DATA / "usage_openzfs.txt").read_text()))
    rows = zfsmod.parse_list_output(OPENZFS_LIST, props)
    datasets = zfsmod.build_datasets(rows)
    assert [d.name for d in datasets] == ["tank", "tank/my data", "tank/vol"]
    data = datasets[1]
    assert data.encryption and data.receive_resume_token == "1-e604ea4bf-e0-789c63a2"
    # Ordered by createtxg, whatever order zfs printed them in; names with spaces survive.
    assert [s.name for s in data.snapshots] == ["auto 0", "auto 1"]
    newest = data.newest()
    assert newest is not None and newest.guid == 2**64 - 1  # unsigned 64-bit, exact
    assert (newest.createtxg, newest.creation, newest.used, newest.userrefs) == (
        12, 1732600100, 90112, 1)
    assert datasets[2].type == "volume" and not datasets[0].encryption


def test_parse_zfs_fuse_get_output() -> None:
    """Real ``zfs get -H -p -r -o name,property,value ...`` output of zfs-fuse."""
    rows = zfsmod.parse_get_output((DATA / "get_zfs_fuse.txt").read_text())
    datasets = zfsmod.build_datasets(rows)
    data = next(d for d in datasets if d.name == "xsrc/data")
    assert [s.name for s in data.snapshots] == ["s1", "s2", "s3"]
    assert data.snapshots[0].guid == 12487578392663040931
    assert data.snapshots[0].creation == 1795726995
    assert data.snapshots[0].userrefs == 0
    assert data.receive_resume_token is None and not data.encryption


def test_malformed_output_is_an_error_not_a_guess() -> None:
    with pytest.raises(ValueError):
        zfsmod.parse_list_output("tank\tfilesystem\n", zfsmod.BASE_PROPS)
    with pytest.raises(ValueError):
        zfsmod.parse_get_output("tank guid 1\n")


def test_list_uses_list_p_on_openzfs(fake: FakeZfs, flavor: str) -> None:
    zfs = Zfs("zfs")
    datasets = zfs.list_datasets(["tank"])
    assert [d.name for d in datasets] == ["tank", "tank/data"]
    assert [(s.name, s.guid) for s in datasets[1].snapshots] == [("a", 11), ("b", 12), ("c", 13)]
    reads = [argv for argv in fake.calls() if argv[0] in ("list", "get")]
    if flavor == "openzfs":
        assert reads[0][:3] == ["list", "-H", "-p"]
        assert "receive_resume_token" in reads[0][4]
    else:  # zfs-fuse: no `list -p`, so `get -H -p -r`, and only properties it knows
        assert reads[0][:4] == ["get", "-H", "-p", "-r"]
        assert reads[0][6] == "type,guid,createtxg,creation,used,referenced,userrefs"


def test_list_falls_back_when_list_p_is_refused(fake: FakeZfs) -> None:
    """A zfs whose usage text promises -p but refuses it still gets read (via zfs get)."""
    fake.update(flavor="zfsfuse")
    zfs = Zfs("zfs")
    zfs._caps = Capabilities(list_parsable=True, holds=True)
    assert [d.name for d in zfs.list_datasets()] == ["backup", "tank", "tank/data"]
    assert [a[0] for a in fake.calls() if a[0] in ("list", "get")] == ["list", "get"]


def test_missing_root_is_skipped(fake: FakeZfs) -> None:
    names = [d.name for d in Zfs("zfs").list_datasets(["tank/data", "nosuch"])]
    assert names == ["tank/data"]


def test_filter_applies_to_listing(fake: FakeZfs) -> None:
    datasets = Zfs("zfs").list_datasets(None, lambda name: name.startswith("backup"))
    assert [d.name for d in datasets] == ["backup"]


def test_version_only_where_zfs_has_it(fake: FakeZfs, flavor: str) -> None:
    expected = "zfs-2.1.11-1" if flavor == "openzfs" else None
    assert Zfs("zfs").version() == expected


def test_missing_parents_top_down_and_created_unmounted(fake: FakeZfs, flavor: str) -> None:
    zfs = Zfs("zfs")
    assert zfs.missing_parents("backup/a/b/c") == ["backup/a", "backup/a/b"]
    assert zfs.missing_parents("tank/data/x") == []
    argv = zfs.create_parent_argv("backup/a")
    if flavor == "openzfs":
        assert argv == ("zfs", "create", "-p", "-u", "-o", "canmount=off", "backup/a")
    else:
        assert argv == ("zfs", "create", "-p", "-o", "canmount=off", "backup/a")


@pytest.mark.parametrize("bad", ["-F", "tank/-x", "tank/a;rm", "tank/$(id)", "", "tank/a\nb"])
def test_argv_builders_refuse_bad_names(bad: str) -> None:
    with pytest.raises(ValueError):
        zfsmod.send_argv("zfs", bad, "snap")
    with pytest.raises(ValueError):
        zfsmod.hold_argv("zfs", "tag", bad, "snap")


@pytest.mark.parametrize("bad", ["-r", "a b;c", "x`id`", "a/b"])
def test_snapshot_names_are_checked(bad: str) -> None:
    with pytest.raises(ValueError):
        zfsmod.snapshot_arg("tank/data", bad)


def test_send_argv_shapes() -> None:
    assert zfsmod.send_argv("/sbin/zfs", "tank/d", "b", "a", True, ("-w",)) == (
        "/sbin/zfs", "send", "-w", "-I", "tank/d@a", "tank/d@b")
    assert zfsmod.send_argv("zfs", "tank/d", "b", "a") == ("zfs", "send", "-i", "tank/d@a",
                                                          "tank/d@b")
    assert zfsmod.resume_send_argv("zfs", "1-abc-12", dry_run=True) == (
        "zfs", "send", "-n", "-v", "-t", "1-abc-12")
    with pytest.raises(ValueError):
        zfsmod.resume_send_argv("zfs", "1-abc; rm -rf /")


def test_run_refuses_foreign_commands_and_reports_stderr() -> None:
    def runner(argv: object, timeout: object) -> Completed:
        return Completed(1, "", "cannot open 'x': dataset does not exist\n")

    zfs = Zfs("zfs", runner=runner)
    with pytest.raises(ValueError):
        zfs.run(("rm", "-rf", "/"))
    with pytest.raises(ZfsError) as info:
        zfs.run(("zfs", "rollback", "x@y"))
    assert "dataset does not exist" in str(info.value) and "zfs rollback x@y" in str(info.value)


def test_missing_zfs_binary_is_a_clear_error() -> None:
    zfs = Zfs("/nonexistent/sbin/zfs")
    with pytest.raises(ZfsError) as info:
        zfs.capabilities()
    assert "not found" in str(info.value)
