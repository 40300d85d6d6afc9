"""Throughput of a full send through the agent versus the same pipeline run by hand.

On real ZFS (zfs-fuse, file-backed pools in a temporary directory) and real SSH (a private
sshd on 127.0.0.1, as in ``tests/e2e``), it sends one dataset of ``--size-mb`` MiB of
incompressible data (200 by default) as a full stream, alternately:

- **by hand**: ``bash -c "ssh ... 'zfs send src/data@s' | zfs receive -u dst/copy"``, i.e. an
  OS pipe between the two processes;
- **agent**: the agent's own code path for a ``full_send`` action (``actions.Runner``: the
  same argv, the stream relayed through the agent, which counts bytes and honours timeouts,
  bandwidth limits and SIGTERM; holds off, so only the transfer is timed);

and the same pair without ssh (``zfs send | zfs receive`` locally), which shows the relay's
own cost most clearly. It prints MiB/s per round, the medians, and agent/hand ratios; it
asserts nothing. Needs root, zfs-fuse and openssh-server (like the e2e tests).

    sudo .venv/bin/python bench/agent_throughput.py
    sudo .venv/bin/python bench/agent_throughput.py --size-mb 50 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.e2e import harness  # noqa: E402
from zfs_sync.agent import pipeline  # noqa: E402
from zfs_sync.agent.actions import Runner  # noqa: E402
from zfs_sync.agent.config import AgentConfig, DatasetFilter  # noqa: E402
from zfs_sync.agent.remote import SshTarget, ssh_argv  # noqa: E402
from zfs_sync.agent.validate import Action  # noqa: E402
from zfs_sync.agent.zfs import Zfs  # noqa: E402

CHUNK = 8 << 20


def fill(directory: Path, size_mb: int) -> None:
    """Incompressible data, so neither side can cheat with compression."""
    remaining = size_mb << 20
    index = 0
    while remaining > 0:
        size = min(CHUNK, remaining)
        (directory / f"blob{index:04d}.bin").write_bytes(os.urandom(size))
        remaining -= size
        index += 1


def timed(run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def hand(send: list[str], receive: list[str]) -> None:
    line = f"{shlex.join(send)} | {shlex.join(receive)}"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", line], capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{line}: {result.stderr}")


def agent_relay(send: list[str], receive: list[str]) -> None:
    result = pipeline.run_pipeline(send, receive, pipeline.Options())
    if not result.ok:
        raise RuntimeError(result.message())


def measure(size_mb: int, rounds: int, workdir: Path) -> None:
    suffix = os.urandom(3).hex()
    src, dst = f"benchsrc{suffix}", f"benchdst{suffix}"
    pool_size = f"{max(512, size_mb * 2 + 256)}M"
    with harness.zfs_fuse_daemon(), \
            harness.file_pool(src, workdir / "pools", pool_size) as mount, \
            harness.file_pool(dst, workdir / "pools", pool_size), \
            harness.private_sshd(workdir / "sshd") as ssh:
        harness.run("zfs", "create", f"{src}/data")
        fill(mount / "data", size_mb)
        harness.run("zfs", "snapshot", f"{src}/data@s")
        config = AgentConfig(
            server_url="http://127.0.0.1:9/api/v1", system_id="bench", api_key="unused",
            ssh_identity=str(ssh.identity), ssh_known_hosts=str(ssh.known_hosts),
            datasets=DatasetFilter((dst,)), holds=False, lock_file=str(workdir / "lock"),
        )
        target = SshTarget("127.0.0.1", ssh.user, ssh.port)
        remote_send = ["zfs", "send", f"{src}/data@s"]
        runner = Runner(config, Zfs("zfs"), threading.Event())

        def copy(name: str) -> str:
            return f"{dst}/{name}"

        def via_agent() -> None:
            action = Action("bench", "full_send", "g", "data", copy("agent"), f"{src}/data", 1,
                            2, snapshot_name="s", source=target)
            runner.run(action)

        cases: dict[str, tuple[str, Callable[[], None]]] = {
            "ssh, by hand": ("hand", lambda: hand(
                list(ssh_argv(config, target, remote_send)),
                ["zfs", "receive", "-u", copy("hand")])),
            "ssh, agent": ("agent", via_agent),
            "local, by hand": ("hand", lambda: hand(remote_send,
                                                    ["zfs", "receive", "-u", copy("hand")])),
            "local, agent relay": ("agent", lambda: agent_relay(
                remote_send, ["zfs", "receive", "-u", copy("agent")])),
        }
        rates: dict[str, list[float]] = {name: [] for name in cases}
        for index in range(rounds):
            order = list(cases) if index % 2 == 0 else list(reversed(cases))
            for name in order:
                copy_name, run = cases[name]
                seconds = timed(run)
                harness.run("zfs", "destroy", "-r", copy(copy_name))
                rates[name].append(size_mb / seconds)
                print(f"round {index + 1}: {name:<20} {size_mb / seconds:8.1f} MiB/s "
                      f"({seconds:.2f} s)", flush=True)
        report(rates, size_mb)


def report(rates: dict[str, list[float]], size_mb: int) -> None:
    median = {name: statistics.median(values) for name, values in rates.items()}
    print(f"\nfull send of {size_mb} MiB, median of {len(next(iter(rates.values())))} rounds:")
    for name, value in median.items():
        print(f"  {name:<20} {value:8.1f} MiB/s")
    for kind in ("ssh", "local"):
        agent = median[f"{kind}, agent" if kind == "ssh" else "local, agent relay"]
        ratio = agent / median[f"{kind}, by hand"]
        print(f"  ratio agent / by hand ({kind}): {ratio:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    missing = harness.missing_requirements()
    if missing:
        print(f"needs: {', '.join(missing)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="zfs-sync-bench-") as workdir:
        measure(args.size_mb, args.rounds, Path(workdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
