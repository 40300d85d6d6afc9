"""A fake ``zfs`` (and ``ssh``) for the agent's unit tests.

It keeps its pools in a JSON state file, speaks either OpenZFS's or zfs-fuse's dialect (usage
text, ``list -p`` or not, ``version`` or not), and logs every argv it was run with, so tests
can check what the agent ran as well as what it achieved. Streams are a JSON header line, a
payload and an ``END`` trailer, so a truncated stream is detected like ZFS would.

Installed by ``tests/agent/conftest.py`` as ``zfs`` and ``ssh`` in a temporary bin directory.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn

DATA = Path(__file__).resolve().parent / "data"
STATE = Path(os.environ.get("FAKE_ZFS_STATE", "/nonexistent"))
LOG = Path(os.environ.get("FAKE_ZFS_LOG", "/dev/null"))
END = b"\nEND\n"


def log(kind: str, argv: list[str]) -> None:
    with open(LOG, "a") as handle:
        handle.write(json.dumps({"cmd": kind, "argv": argv,
                                 "host": os.environ.get("FAKE_ZFS_HOST", "local")}) + "\n")


def fail(message: str, code: int = 1) -> NoReturn:
    sys.stderr.write(message + "\n")
    sys.exit(code)


class State:
    def __init__(self) -> None:
        self._fd = os.open(STATE, os.O_RDWR)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self.data: dict[str, Any] = json.loads(STATE.read_text())

    def save(self) -> None:
        STATE.write_text(json.dumps(self.data, indent=1))

    def release(self) -> None:
        """Unlock before streaming, or a receiver waiting for the lock would never drain."""
        os.close(self._fd)

    @property
    def datasets(self) -> dict[str, Any]:
        return self.data["datasets"]  # type: ignore[no-any-return]

    def snaps(self, dataset: str) -> list[dict[str, Any]]:
        return self.datasets[dataset].setdefault("snapshots", [])  # type: ignore[no-any-return]

    def next_txg(self) -> int:
        self.data["txg"] = self.data.get("txg", 100) + 1
        return int(self.data["txg"])

    def find_snap(self, full: str) -> dict[str, Any] | None:
        dataset, _, name = full.partition("@")
        if dataset not in self.datasets:
            return None
        return next((s for s in self.snaps(dataset) if s["name"] == name), None)

    def exists(self, name: str) -> bool:
        return self.find_snap(name) is not None if "@" in name else name in self.datasets


def usage(flavor: str) -> str:
    return (DATA / f"usage_{'zfs_fuse' if flavor == 'zfsfuse' else 'openzfs'}.txt").read_text()


def props_of(state: State, name: str) -> dict[str, Any]:
    if "@" in name:
        snap = state.find_snap(name)
        assert snap is not None
        ds = state.datasets[name.partition("@")[0]]
        return {"name": name, "type": "snapshot", "guid": snap["guid"],
                "createtxg": snap["createtxg"], "creation": snap["creation"],
                "used": snap.get("used", 0), "referenced": snap.get("referenced", 4096),
                "userrefs": len(snap.get("holds", [])),
                "encryption": ds.get("encryption", "off"), "receive_resume_token": "-"}
    ds = state.datasets[name]
    return {"name": name, "type": ds.get("type", "filesystem"), "guid": ds.get("guid", 1),
            "createtxg": ds.get("createtxg", 1), "creation": ds.get("creation", 1700000000),
            "used": 8192, "referenced": 4096, "userrefs": "-",
            "encryption": ds.get("encryption", "off"),
            "receive_resume_token": ds.get("token") or "-"}


def names_under(state: State, roots: list[str], recursive: bool, types: set[str]) -> list[str]:
    chosen: list[str] = []
    for root in roots or sorted(state.datasets):
        if not state.exists(root):
            fail(f"cannot open '{root}': dataset does not exist")
        if "@" in root:
            chosen.append(root)
            continue
        for name in sorted(state.datasets):
            below = (recursive or not roots) and name.startswith(root + "/")
            if (name == root or below) and name not in chosen:
                chosen.append(name)
    result: list[str] = []
    for name in chosen:
        if "@" in name or state.datasets[name].get("type", "filesystem") in types:
            result.append(name)
        if "@" not in name and "snapshot" in types and (recursive or not roots):
            result += [f"{name}@{s['name']}" for s in state.snaps(name)]
    return result


def parse_opts(args: list[str], with_value: str) -> tuple[dict[str, Any], list[str]]:
    opts: dict[str, Any] = {}
    rest: list[str] = []
    it = iter(args)
    for arg in it:
        if arg.startswith("-") and len(arg) > 1 and not rest:
            for i, letter in enumerate(arg[1:]):
                if letter in with_value:
                    opts.setdefault(letter, []).append(arg[i + 2:] or next(it))
                    break
                opts[letter] = True
        else:
            rest.append(arg)
    return opts, rest


def cmd_list(state: State, args: list[str]) -> None:
    opts, rest = parse_opts(args, "otsSd")
    if opts.get("p") and state.data["flavor"] == "zfsfuse":
        fail("invalid option 'p'\nusage:\n\tlist [-rH][-d max] [-o property[,...]]", 2)
    props = ",".join(opts.get("o", ["name,used,available,referenced,mountpoint"])).split(",")
    types = set(",".join(opts.get("t", ["filesystem,volume"])).split(","))
    if rest:  # like zfs: a named snapshot is listed whatever -t says
        types |= {"snapshot"} if any("@" in r for r in rest) else set()
    for name in names_under(state, rest, bool(opts.get("r")), types):
        values = props_of(state, name)
        if state.data["flavor"] == "zfsfuse" and not opts.get("p"):
            values = {**values, "guid": "10.3E"}  # what zfs-fuse really prints
        print("\t".join(str(values[p]) for p in props))


def cmd_get(state: State, args: list[str]) -> None:
    opts, rest = parse_opts(args, "osd")
    props, targets = rest[0].split(","), rest[1:]
    known = set(props_of(state, min(state.datasets)))
    for prop in props:
        if prop not in known or (state.data["flavor"] == "zfsfuse" and prop in
                                 ("encryption", "receive_resume_token")):
            fail(f"bad property list: invalid property '{prop}'", 2)
    types = {"filesystem", "volume", "snapshot"}
    columns = ",".join(opts.get("o", ["name,property,value,source"])).split(",")
    for name in names_under(state, targets, bool(opts.get("r")), types):
        values = props_of(state, name)
        for prop in props:
            row = {"name": name, "property": prop, "value": values[prop], "source": "-"}
            print("\t".join(str(row[c]) for c in columns))


def cmd_send(state: State, args: list[str]) -> None:
    injected = state.data.get("fail", {}).get("send")
    if injected:
        fail(injected)
    opts, rest = parse_opts(args, "iIt")
    if "t" in opts:  # the fake's tokens are hex of {"snap": "ds@s", "base": "ds@b" | null}
        try:
            resume = json.loads(bytes.fromhex(opts["t"][0].split("-", 1)[1]))
        except ValueError:
            fail("cannot resume send: kernel modules must be upgraded to receive this stream")
        if state.find_snap(resume["snap"]) is None:
            fail(f"cannot resume send: '{resume['snap']}' used in the initial send no longer "
                 "exists")
        if opts.get("n"):
            print(f"resume token contents:\ntoname = {resume['snap']}")
            return
        rest = [resume["snap"]]
        opts = {"i": [resume["base"]]} if resume["base"] else {}
    snap = state.find_snap(rest[0])
    if snap is None:
        fail(f"cannot open '{rest[0]}': dataset does not exist")
    base_name = (opts.get("i") or opts.get("I") or [None])[0]
    dataset = rest[0].partition("@")[0]
    snaps = state.snaps(dataset)
    chosen = [snap]
    base_guid = None
    if base_name is not None:
        base = state.find_snap(base_name if "@" in base_name else f"{dataset}@{base_name}")
        if base is None:
            fail(f"cannot open '{base_name}': dataset does not exist")
        after = [s for s in snaps if base["createtxg"] < s["createtxg"] <= snap["createtxg"]]
        chosen = after if "I" in opts else [snap]
        base_guid = base["guid"]
    header = {"dataset": dataset, "base_guid": base_guid, "snapshots": chosen}
    size = int(state.data.get("stream_size", 65536))
    state.release()
    out = sys.stdout.buffer
    out.write(json.dumps(header).encode() + b"\n")
    out.write(b"x" * size)
    out.write(END)
    out.flush()


def cmd_receive(state: State, args: list[str], raw: bytes) -> None:
    opts, rest = parse_opts(args, "ox")
    if "A" in opts:
        state.datasets[rest[0]].pop("token", None)
        state.save()
        return
    if opts.get("F") or opts.get("o"):
        fail("the fake refuses -F and -o: the agent must never send them")
    target = rest[0]
    injected = state.data.get("fail", {}).get("receive")
    if injected:
        fail(injected)
    if not raw.endswith(END):
        fail("cannot receive: failed to read from stream")
    header = json.loads(raw.split(b"\n", 1)[0])
    partial = target in state.datasets and state.datasets[target].get("token")
    if partial and not opts.get("s"):
        fail(f"cannot receive: destination {target} contains partially-complete state "
             'from "zfs receive -s"')
    if partial:  # the resumed stream completes the partial receive
        state.datasets[target].pop("token")
        if header["base_guid"] is None:
            state.datasets.pop(target)  # a partial first receive is all there is of it
    if header["base_guid"] is None:
        receive_full(state, target, header)
    else:
        receive_incremental(state, target, header)
    state.save()


def receive_full(state: State, target: str, header: dict[str, Any]) -> None:
    if target in state.datasets:
        fail(f"cannot receive new filesystem stream: destination '{target}' exists\n"
             "must specify -F to overwrite it")
    parent = target.rpartition("/")[0]
    if parent not in state.datasets:
        fail(f"cannot receive new filesystem stream: parent of '{target}' does not exist")
    state.datasets[target] = {"type": "filesystem", "guid": state.next_txg() * 7,
                              "snapshots": [dict(s, createtxg=state.next_txg(), holds=[])
                                            for s in header["snapshots"]]}


def receive_incremental(state: State, target: str, header: dict[str, Any]) -> None:
    if target not in state.datasets:
        fail(f"cannot receive incremental stream: destination '{target}' does not exist")
    snaps = state.snaps(target)
    if state.datasets[target].get("modified"):
        fail(f"cannot receive incremental stream: destination {target} has been modified\n"
             "since most recent snapshot")
    if not snaps or snaps[-1]["guid"] != header["base_guid"]:
        fail(f"cannot receive incremental stream: most recent snapshot of {target} does not\n"
             "match incremental source")
    for snap in header["snapshots"]:
        snaps.append(dict(snap, createtxg=state.next_txg(), holds=[]))


def cmd_rollback(state: State, args: list[str]) -> None:
    opts, rest = parse_opts(args, "")
    dataset, _, name = rest[0].partition("@")
    snaps = state.snaps(dataset)
    index = next((i for i, s in enumerate(snaps) if s["name"] == name), None)
    if index is None:
        fail(f"cannot open '{rest[0]}': dataset does not exist")
    newer = snaps[index + 1:]
    if newer and not opts.get("r"):
        fail(f"cannot rollback to '{rest[0]}': more recent snapshots exist\n"
             "use '-r' to force deletion of the following snapshots:\n"
             + "\n".join(f"{dataset}@{s['name']}" for s in newer))
    if any(s.get("holds") for s in newer):
        fail(f"cannot destroy snapshots of {dataset}: dataset is busy")
    del snaps[index + 1:]
    state.datasets[dataset]["modified"] = False
    state.save()


def cmd_simple(state: State, sub: str, args: list[str]) -> None:
    opts, rest = parse_opts(args, "o")
    if sub == "create":
        if rest[0] in state.datasets and not opts.get("p"):
            fail(f"cannot create '{rest[0]}': dataset already exists")
        if rest[0].rpartition("/")[0] not in state.datasets and not opts.get("p"):
            fail(f"cannot create '{rest[0]}': parent does not exist")
        state.datasets.setdefault(rest[0], {"type": "filesystem", "snapshots": []})
    elif sub == "rename":
        old, new = rest
        for name in [n for n in state.datasets if n == old or n.startswith(old + "/")]:
            state.datasets[new + name[len(old):]] = state.datasets.pop(name)
    elif sub in ("hold", "release"):
        tag, full = rest
        snap = state.find_snap(full)
        if snap is None:
            fail(f"cannot open '{full}': dataset does not exist")
        holds = snap.setdefault("holds", [])
        if sub == "hold" and tag in holds:
            fail(f"cannot hold snapshot '{full}': tag already exists on this dataset")
        if sub == "release" and tag not in holds:
            fail(f"cannot release '{tag}' from '{full}': no such tag on this dataset")
        holds.append(tag) if sub == "hold" else holds.remove(tag)
    else:
        fail(f"the fake zfs does not do '{sub}'", 2)
    state.save()


def zfs_main(argv: list[str]) -> None:
    log("zfs", argv)
    # A receiver reads its stream before taking the state lock (the sender holds it briefly).
    raw = sys.stdin.buffer.read() if argv[:1] in (["receive"], ["recv"]) else b""
    state = State()
    flavor = state.data["flavor"]
    if not argv or argv[0] in ("-?", "--help"):
        print(usage(flavor))
        return
    sub, args = argv[0], argv[1:]
    if sub == "version":
        if flavor == "zfsfuse":
            fail(f"unrecognized command 'version'\n{usage(flavor)}", 2)
        print("zfs-2.1.11-1\nzfs-kmod-2.1.11-1")
    elif sub == "list":
        cmd_list(state, args)
    elif sub == "get":
        cmd_get(state, args)
    elif sub == "send":
        cmd_send(state, args)
    elif sub in ("receive", "recv"):
        cmd_receive(state, args, raw)
    elif sub == "rollback":
        cmd_rollback(state, args)
    else:
        cmd_simple(state, sub, args)


def ssh_main(argv: list[str]) -> None:
    """``ssh [opts] DEST [--] COMMAND``: run COMMAND with sh, as the 'remote' host."""
    log("ssh", argv)
    with_value = set("oipFlcDLRWJEBbemQS")
    it = iter(argv)
    dest: str | None = None
    for arg in it:
        if dest is None and arg.startswith("-"):
            if arg[1:2] in with_value and len(arg) == 2:
                next(it)
            continue
        if dest is None:
            dest = arg
            continue
        rest = [arg, *it]
        break
    else:
        rest = []
    if rest[:1] == ["--"]:
        rest = rest[1:]
    if dest is None or not rest:
        fail("usage: ssh destination command", 255)
    if "closed" in dest:
        fail(f"ssh: connect to host {dest} port 1: Connection refused", 255)
    env = {**os.environ, "FAKE_ZFS_HOST": dest}
    sys.stdout.flush()
    code = subprocess.call(["/bin/sh", "-c", " ".join(rest)], env=env)
    if "flaky" in dest:  # the stream went through, then the connection broke at teardown
        sys.stdout.flush()
        fail("Connection to flaky.example closed by remote host.", 255)
    sys.exit(code)


if __name__ == "__main__":
    if os.environ.get("FAKE_AS") == "ssh":
        ssh_main(sys.argv[1:])
    else:
        zfs_main(sys.argv[1:])
