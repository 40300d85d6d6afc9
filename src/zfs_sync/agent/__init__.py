"""zfs-sync-agent: the host side of zfs-sync.

It reads the local pools, reports them and its heartbeat to the witness, fetches the
witness's instructions and carries them out (the target pulls: ``ssh source zfs send | zfs
receive``), and reports the results.

The agent runs on the hosts, which often have an older Python than the witness: everything
under ``zfs_sync.agent`` must import on Python 3.9 with only the base dependencies (httpx,
PyYAML) installed, so it never imports the server's packages (FastAPI, SQLAlchemy, pydantic).
The only other module it uses is ``zfs_sync.domain.names`` (stdlib only), the project's one
judge of ZFS names.
"""

from __future__ import annotations

from zfs_sync import __version__

AGENT_NAME = "zfs-sync-agent"

__all__ = ["AGENT_NAME", "__version__"]
