"""Real ZFS (zfs-fuse) and real SSH for the agent's end-to-end tests and its benchmark.

Plain functions and context managers, so ``tests/e2e/conftest.py`` and
``bench/agent_throughput.py`` share them:

- ``zfs_fuse_daemon()``: makes sure a zfs-fuse daemon answers; starts one if none does, and
  stops it again when the last user (across pytest-xdist workers) is done and it has no pools.
- ``file_pool(name, directory)``: a pool on a sparse file, mounted under ``directory``.
- ``private_sshd(directory)``: an sshd on a free 127.0.0.1 port with a throwaway host key and
  user key, a pre-seeded known_hosts, and an ssh_config/wrapper that uses them.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REQUIRED_TOOLS = ("zfs-fuse", "zfs", "zpool", "sshd", "ssh", "ssh-keygen")
SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")
COORDINATION = Path("/tmp/zfs-sync-e2e")  # shared by all workers and runs on this machine


def which(tool: str) -> str | None:
    found = shutil.which(tool)
    if found:
        return found
    for directory in SBIN:
        candidate = Path(directory) / tool
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def missing_requirements() -> list[str]:
    missing = [tool for tool in REQUIRED_TOOLS if which(tool) is None]
    if os.geteuid() != 0:
        missing.append("root (zfs-fuse and zpool need it)")
    if not Path("/dev/fuse").exists():
        missing.append("/dev/fuse")
    return missing


def run(*argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                            check=False, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): "
                           f"{result.stderr.strip() or result.stdout.strip()}")
    return result


def _daemon_answers() -> bool:
    try:
        return run("zpool", "list", "-H", check=False, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@contextmanager
def _coordination_lock() -> Iterator[None]:
    COORDINATION.mkdir(parents=True, exist_ok=True)
    with open(COORDINATION / "lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def zfs_fuse_daemon() -> Iterator[None]:
    users = COORDINATION / "users"
    me = users / str(os.getpid())
    with _coordination_lock():
        users.mkdir(parents=True, exist_ok=True)
        me.touch()
        if not _daemon_answers():
            _start_daemon()
    try:
        yield
    finally:
        with _coordination_lock():
            me.unlink(missing_ok=True)
            _stop_daemon_if_unused(users)


def _pid_in(pidfile: Path) -> int | None:
    text = pidfile.read_text().strip() if pidfile.exists() else ""
    return int(text) if text.isdigit() else None


def _wait_gone(pid: int | None, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while pid is not None and _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)


def _start_daemon() -> None:
    pidfile = COORDINATION / "zfs-fuse.pid"
    _wait_gone(_pid_in(pidfile))  # a daemon stopped by a previous run takes a while to exit
    # zfs-fuse leaves its pid file behind when it exits, and refuses (exit 1, no message) to
    # start while the file exists.
    pidfile.unlink(missing_ok=True)
    deadline = time.monotonic() + 30
    while True:
        # -p: daemonize and write the pid, so the daemon outlives the worker that started it
        # until the last worker is done with it.
        started = run(which("zfs-fuse") or "zfs-fuse", "-p", str(pidfile), check=False)
        if started.returncode == 0:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"cannot start zfs-fuse: {started.stderr.strip()}")
        time.sleep(0.5)
    (COORDINATION / "started-by-tests").touch()
    deadline = time.monotonic() + 30
    while not _daemon_answers():
        if time.monotonic() > deadline:
            raise RuntimeError("zfs-fuse started but does not answer `zpool list`")
        time.sleep(0.2)


def _stop_daemon_if_unused(users: Path) -> None:
    for entry in users.iterdir():
        if not entry.name.isdigit() or not _alive(int(entry.name)):
            entry.unlink(missing_ok=True)
    marker = COORDINATION / "started-by-tests"
    if any(users.iterdir()) or not marker.exists():
        return  # still in use, or not ours to stop
    pools = run("zpool", "list", "-H", "-o", "name", check=False).stdout.split()
    if pools:
        return
    pid = _pid_in(COORDINATION / "zfs-fuse.pid")
    if pid is not None and _alive(pid):
        os.kill(pid, 15)
        _wait_gone(pid, 30)
    marker.unlink(missing_ok=True)


@contextmanager
def file_pool(name: str, directory: Path, size: str = "256M") -> Iterator[Path]:
    """A pool ``name`` on ``directory/name.img``; yields its mountpoint."""
    directory.mkdir(parents=True, exist_ok=True)
    image, mountpoint = directory / f"{name}.img", directory / "mnt" / name
    run("truncate", "-s", size, str(image))
    run("zpool", "create", "-m", str(mountpoint), name, str(image))
    # atime off: reading files on a target must not count as modifying it.
    run("zfs", "set", "atime=off", name)
    try:
        yield mountpoint
    finally:
        destroy_pool(name)
        image.unlink(missing_ok=True)


def destroy_pool(name: str) -> None:
    for _ in range(20):
        if run("zpool", "destroy", "-f", name, check=False).returncode == 0:
            return
        if name not in run("zpool", "list", "-H", "-o", "name", check=False).stdout.split():
            return
        time.sleep(0.5)  # "pool is busy" right after a receive: try again


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Ssh:
    port: int
    user: str
    identity: Path
    known_hosts: Path
    config_file: Path  # Host 127.0.0.1 with the identity and known_hosts
    wrapper_dir: Path  # holds an `ssh` that uses config_file (for scripts we run unchanged)

    def base_argv(self) -> list[str]:
        return ["ssh", "-F", str(self.config_file), "-p", str(self.port)]


@contextmanager
def private_sshd(directory: Path) -> Iterator[Ssh]:
    directory.mkdir(parents=True, exist_ok=True)
    keygen = which("ssh-keygen") or "ssh-keygen"
    host_key, user_key = directory / "host_key", directory / "user_key"
    for key in (host_key, user_key):
        if not key.exists():
            run(keygen, "-q", "-t", "ed25519", "-N", "", "-C", "zfs-sync-e2e", "-f", str(key))
    (directory / "authorized_keys").write_text((directory / "user_key.pub").read_text())
    port = free_port()
    config = directory / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}",
        f"PidFile {directory / 'sshd.pid'}",
        f"AuthorizedKeysFile {directory / 'authorized_keys'}",
        "PubkeyAuthentication yes", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
        "UsePAM no", "StrictModes no", "LogLevel ERROR", "",
    ]))
    # sshd's privilege separation directory; missing on a fresh machine.
    Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    known = directory / "known_hosts"
    host_pub = (directory / "host_key.pub").read_text().split()
    known.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    client_config = directory / "ssh_config"
    client_config.write_text("\n".join([
        "Host 127.0.0.1", f"  IdentityFile {user_key}", "  IdentitiesOnly yes",
        f"  UserKnownHostsFile {known}", "  StrictHostKeyChecking yes", "  BatchMode yes",
        "  LogLevel ERROR", "",
    ]))
    wrapper_dir = directory / "bin"
    wrapper_dir.mkdir(exist_ok=True)
    wrapper = wrapper_dir / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec {which("ssh")} -F {client_config} "$@"\n')
    wrapper.chmod(0o755)
    log = open(directory / "sshd.log", "wb")  # noqa: SIM115 (open while sshd runs)
    sshd = subprocess.Popen([which("sshd") or "sshd", "-D", "-e", "-f", str(config)],
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    ssh = Ssh(port, "root", user_key, known, client_config, wrapper_dir)
    try:
        _wait_for_ssh(ssh, sshd, directory / "sshd.log")
        yield ssh
    finally:
        sshd.terminate()
        try:
            sshd.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sshd.kill()
        log.close()


def _wait_for_ssh(ssh: Ssh, sshd: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if sshd.poll() is not None:
            raise RuntimeError(f"sshd exited: {log.read_text()[-2000:]}")
        probe = run(*ssh.base_argv(), f"{ssh.user}@127.0.0.1", "true", check=False, timeout=20)
        if probe.returncode == 0:
            return
        time.sleep(0.3)
    raise RuntimeError(f"cannot log in to the test sshd: {probe.stderr.strip()}")
