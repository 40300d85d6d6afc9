"""One agent: report, heartbeat, sync, and the cycle that strings them together."""

from __future__ import annotations

import logging
import platform
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from zfs_sync.agent import __version__
from zfs_sync.agent.client import WitnessClient, WitnessError
from zfs_sync.agent.config import AgentConfig
from zfs_sync.agent.executor import Executor, Outcome
from zfs_sync.agent.inventory import read_datasets, report_body
from zfs_sync.agent.lock import system_lock
from zfs_sync.agent.zfs import Zfs

log = logging.getLogger("zfs_sync.agent")


@dataclass
class SyncSummary:
    outcomes: list[Outcome]

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failed(self) -> bool:
        return self.count("error") > 0

    def line(self) -> str:
        parts = [f"{self.count(s)} {s}" for s in ("in_sync", "error", "skipped", "planned")
                 if self.count(s)]
        return ", ".join(parts) or "nothing to do"


class Agent:
    def __init__(self, config: AgentConfig, zfs: Zfs | None = None,
                 client: WitnessClient | None = None, stop: threading.Event | None = None,
                 interval_seconds: int | None = None) -> None:
        self.config = config
        self.zfs = zfs or Zfs(config.zfs_path)
        self.client = client or WitnessClient(
            config.server_url, config.api_key, config.http_timeout_seconds,
            verify=config.tls_ca_file or config.tls_verify,
        )
        self.stop = stop or threading.Event()
        self.interval_seconds = interval_seconds or config.interval_seconds

    def close(self) -> None:
        self.client.close()

    # --- the commands -----------------------------------------------------------------------

    def report(self, only: Sequence[str] | None = None) -> Any:
        """Full state (or the state of ``only``, replacing just those datasets)."""
        datasets = read_datasets(self.config, self.zfs, only)
        snapshots, records = report_body(datasets)
        scope = None
        if only is not None:
            scope = [d for d in only if self.config.datasets.matches(d)]
        result = self.client.report(self.config.system_id, snapshots, records, scope)
        log.info("reported %d dataset(s), %d snapshot(s)%s: %s", len(records), len(snapshots),
                 f" (scope {', '.join(scope)})" if scope is not None else "", result)
        return result

    def heartbeat_body(self) -> dict[str, Any]:
        caps = self.zfs.capabilities()
        body: dict[str, Any] = {
            "agent_version": __version__,
            "zfs_path": self.config.zfs_path,
            "capabilities": caps.report(),
            "interval_seconds": self.interval_seconds,
        }
        version = self.zfs.version()
        if version:
            body["zfs_version"] = version
        return body

    def heartbeat(self) -> Any:
        return self.client.heartbeat(self.config.system_id, self.heartbeat_body())

    def sync(self, dry_run: bool = False, out: TextIO | None = None) -> SyncSummary:
        instructions = self.client.instructions(self.config.system_id)
        count = len(instructions.get("actions") or []) if isinstance(instructions, dict) else 0
        log.info("%d action(s) from the witness", count)
        executor = Executor(self.config, self.zfs, None if dry_run else self.client,
                            dry_run=dry_run, out=out, stop=self.stop)
        summary = SyncSummary(executor.execute(instructions))
        if not dry_run:
            self._rereport(executor)
        log.info("sync: %s", summary.line())
        return summary

    def _rereport(self, executor: Executor) -> None:
        """Tell the witness at once what changed, so its next plan starts from the facts."""
        changed = executor.changed_datasets()
        if not changed:
            return
        try:
            # A rename moves a whole subtree to a new name: report everything.
            self.report(None if executor.renamed else changed)
        except (WitnessError, RuntimeError) as exc:
            log.warning("could not re-report the changed datasets: %s", exc)

    def run_cycle(self) -> SyncSummary:
        """report, heartbeat, sync, heartbeat: one cycle, under the per-system lock.

        The heartbeat comes before the sync as well because the witness plans only for
        online systems, and a host's first cycle would otherwise find itself offline."""
        with system_lock(self.config.lock_path()):
            self.report()
            self.heartbeat()
            summary = self.sync()
            if not self.stop.is_set():
                self.heartbeat()
            return summary

    def locked_sync(self, dry_run: bool, out: TextIO | None = None) -> SyncSummary:
        if dry_run:  # changes nothing, so it may run beside a real cycle
            return self.sync(True, out)
        with system_lock(self.config.lock_path()):
            return self.sync(False, out)


def platform_name() -> str:
    return platform.system().lower() or sys.platform
