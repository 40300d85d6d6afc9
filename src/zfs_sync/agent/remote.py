"""The ssh stage: run a zfs argv on a source host.

ssh hands its command to the remote user's shell, which re-splits it; so the remote command
is always ``shlex.join`` of an argv whose every element was validated (``agent/zfs.py``), and
the ssh options come from the agent's own config, never from the witness. ``BatchMode=yes``:
never prompt (a cron job has nobody to answer); host keys are always checked.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from zfs_sync.agent.config import AgentConfig
from zfs_sync.domain import names


@dataclass(frozen=True)
class SshTarget:
    """A source as the witness described it (validated before it gets here)."""

    hostname: str
    user: str | None = None
    port: int = 22

    def destination(self) -> str:
        host = names.validate_ssh_hostname(self.hostname)
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]  # ssh wants a bare IPv6 address after '@'
        if self.user is None:
            return host
        return f"{names.validate_ssh_user(self.user)}@{host}"

    def label(self) -> str:
        return f"{self.destination()}:{self.port}"


def ssh_options(config: AgentConfig) -> list[str]:
    argv = ["-n", "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={config.ssh_connect_timeout_seconds}"]
    if config.ssh_config_file:
        argv += ["-F", config.ssh_config_file]
    if config.ssh_identity:
        argv += ["-i", config.ssh_identity, "-o", "IdentitiesOnly=yes"]
    if config.ssh_known_hosts:
        argv += ["-o", f"UserKnownHostsFile={config.ssh_known_hosts}",
                 "-o", "StrictHostKeyChecking=yes"]
    for option in config.ssh_options:
        argv += ["-o", option]
    return argv


def ssh_argv(config: AgentConfig, target: SshTarget, remote: Sequence[str]) -> tuple[str, ...]:
    """``ssh [options] -p PORT [user@]host -- 'remote argv, shell-quoted'``."""
    if isinstance(target.port, bool) or not 0 < int(target.port) < 65536:
        raise ValueError(f"bad ssh port {target.port!r}")
    for arg in remote:
        if "\x00" in arg or "\n" in arg:
            raise ValueError(f"refusing remote argument {arg!r}")
    return (config.ssh_path, *ssh_options(config), "-p", str(int(target.port)),
            target.destination(), "--", shlex.join(remote))
