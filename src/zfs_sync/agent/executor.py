"""Execute the witness's instructions: vet, order, run, report.

- Every action is vetted first (``validate.py``); a refused action is reported as ``error``
  with the reason, and stops its dataset's chain.
- The actions of one target dataset form a chain run in ``sequence`` order; the first
  failure stops the chain (the rest would build on a step that did not happen).
- Chains of different datasets run ``max_parallel`` at a time. A chain whose dataset is new
  (its first action a ``full_send``) waits for its ancestors' chains, and is skipped when one
  of them failed: creating the parent ourselves would make the parent's own full receive fail
  later.
- ``syncing`` is reported before an action, ``in_sync`` or ``error`` (with the stderr tail,
  bytes and duration) after it; a report that fails is logged, never fatal.
"""

from __future__ import annotations

import concurrent.futures
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from zfs_sync.agent import validate
from zfs_sync.agent.actions import ActionFailed, Runner
from zfs_sync.agent.client import WitnessClient, WitnessError
from zfs_sync.agent.config import AgentConfig
from zfs_sync.agent.progress import progress_factory
from zfs_sync.agent.validate import Action, Refused
from zfs_sync.agent.zfs import Zfs, ZfsError

log = logging.getLogger("zfs_sync.agent.executor")
MAX_MESSAGE = 2000


@dataclass
class Outcome:
    action_id: str
    target_dataset: str
    status: str  # in_sync | error | skipped | planned
    message: str = ""
    bytes_moved: int = 0
    seconds: float = 0.0
    action_type: str = ""


@dataclass
class _Item:
    """One entry of a chain: a vetted action, or the refusal of a raw one."""

    sequence: int
    raw: dict[str, Any]
    action: Action | None = None
    refusal: str | None = None


@dataclass
class _Chain:
    target: str
    items: list[_Item] = field(default_factory=list)
    ok: bool = True
    touched: bool = False

    @property
    def is_new(self) -> bool:
        first = self.items[0].action if self.items else None
        return first is not None and first.action_type == "full_send"


class Executor:
    def __init__(self, config: AgentConfig, zfs: Zfs, client: WitnessClient | None, *,
                 dry_run: bool = False, out: TextIO | None = None,
                 stop: threading.Event | None = None) -> None:
        self.config = config
        self.zfs = zfs
        self.client = client
        self.dry_run = dry_run
        self.out = out or sys.stdout  # looked up now: tests and callers may swap stdout
        self.stop = stop or threading.Event()
        self.runner = Runner(config, zfs, self.stop, progress_factory(config))
        self.outcomes: list[Outcome] = []
        self.renamed = False
        self._chains: list[_Chain] = []
        self._lock = threading.Lock()

    # --- planning ---------------------------------------------------------------------------

    def chains(self, instructions: Any) -> list[_Chain]:
        actions = instructions.get("actions") if isinstance(instructions, dict) else None
        if not isinstance(actions, list):
            raise WitnessError("the witness's instructions carry no 'actions' list")
        by_target: dict[str, _Chain] = {}
        for index, raw in enumerate(actions):
            item = self._vet(raw, index)
            target = raw.get("target_dataset") if isinstance(raw, dict) else None
            key = target if isinstance(target, str) else f"<action {index}>"
            by_target.setdefault(key, _Chain(key)).items.append(item)
        for chain in by_target.values():
            chain.items.sort(key=lambda i: i.sequence)
        # Parents before children; the witness sends them in that order, but do not rely on it.
        return sorted(by_target.values(), key=lambda c: (c.target.count("/"), c.target))

    def _vet(self, raw: Any, index: int) -> _Item:
        sequence = raw.get("sequence") if isinstance(raw, dict) else None
        if isinstance(sequence, bool) or not isinstance(sequence, int):
            sequence = 10**9 + index
        item = _Item(sequence, raw if isinstance(raw, dict) else {})
        try:
            item.action = validate.vet(raw, self.config, self.zfs.path)
        except (Refused, ValueError) as exc:
            item.refusal = f"refused by the agent: {exc}"
            log.error("action %d %s", index, item.refusal)
        return item

    # --- running ----------------------------------------------------------------------------

    def execute(self, instructions: Any) -> list[Outcome]:
        chains = self._chains = self.chains(instructions)
        if self.dry_run:
            for chain in chains:
                self._print_chain(chain)
            return self.outcomes
        workers = max(1, min(self.config.max_parallel, len(chains)))
        with concurrent.futures.ThreadPoolExecutor(workers, "zfs-sync-chain") as pool:
            futures: dict[str, concurrent.futures.Future[None]] = {}
            for chain in chains:
                waits = [f for t, f in futures.items() if chain.target.startswith(t + "/")]
                futures[chain.target] = pool.submit(self._run_chain, chain, waits, chains)
            for future in futures.values():
                future.result()
        return self.outcomes

    def changed_datasets(self) -> list[str]:
        """Datasets some command ran on (even a failed one may have changed them)."""
        return sorted(c.target for c in self._chains if c.touched)

    def _run_chain(self, chain: _Chain, waits: list[concurrent.futures.Future[None]],
                   chains: list[_Chain]) -> None:
        # FIFO pool, ancestors submitted first: they have started before we wait on them.
        concurrent.futures.wait(waits)
        failed = [c.target for c in chains if not c.ok and chain.target.startswith(c.target + "/")]
        if chain.is_new and failed:
            self._finish_chain(chain, 0, f"not attempted: the parent dataset {failed[0]} "
                                         "failed to sync in this cycle")
            return
        for position, item in enumerate(chain.items):
            if self.stop.is_set():
                log.info("stopping: %s left for the next cycle", chain.target)
                chain.ok = False
                return
            if not self._run_item(chain, item):
                chain.ok = False
                self._skip_rest(chain, position + 1)
                return

    def _finish_chain(self, chain: _Chain, start: int, message: str) -> None:
        chain.ok = False
        first = chain.items[start] if start < len(chain.items) else None
        if first is not None:
            self._fail(first.raw, first.action, message, 0, 0.0)
        self._skip_rest(chain, start + 1)

    def _skip_rest(self, chain: _Chain, start: int) -> None:
        for item in chain.items[start:]:
            self._record(Outcome(str(item.raw.get("action_id")), chain.target, "skipped",
                                 "an earlier action of this dataset failed"))

    def _run_item(self, chain: _Chain, item: _Item) -> bool:
        action = item.action
        if action is None:
            self._fail(item.raw, None, item.refusal or "refused", 0, 0.0)
            return False
        if action.is_transfer and action.source is None:
            log.warning("skipping %s: %s", action.describe(), action.reason or "no source")
            self._record(Outcome(action.action_id, action.target_dataset, "skipped",
                                 action.reason or "", action_type=action.action_type))
            return False
        self._claim(action, "syncing")
        started = time.monotonic()
        chain.touched = True
        try:
            done = self.runner.run(action)
        except (ActionFailed, ZfsError, ValueError, OSError) as exc:
            moved = exc.bytes_moved if isinstance(exc, ActionFailed) else 0
            self._fail(item.raw, action, str(exc), moved, time.monotonic() - started)
            return False
        seconds = time.monotonic() - started
        self.renamed = self.renamed or action.action_type == "rename"
        log.info("%s: done (%s in %.1f s)", action.describe(), _size(done.bytes_moved), seconds)
        self._record(Outcome(action.action_id, action.target_dataset, "in_sync", "",
                             done.bytes_moved, seconds, action.action_type))
        if action.is_transfer:
            self._claim(action, "in_sync", bytes_moved=done.bytes_moved, seconds=seconds)
        return True

    def _fail(self, raw: dict[str, Any], action: Action | None, message: str, moved: int,
              seconds: float) -> None:
        message = message[-MAX_MESSAGE:]
        target = action.target_dataset if action else str(raw.get("target_dataset"))
        log.error("%s failed: %s", action.describe() if action else "action", message)
        self._record(Outcome(str(raw.get("action_id")), target, "error", message, moved, seconds,
                             action.action_type if action else ""))
        if action is not None:
            self._claim(action, "error", message, moved, seconds)
        else:
            self._claim_raw(raw, message)

    def _record(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)

    # --- state claims -----------------------------------------------------------------------

    def _claim(self, action: Action, status: str, message: str | None = None,
               bytes_moved: int | None = None, seconds: float | None = None) -> None:
        body: dict[str, Any] = {
            "sync_group_id": action.sync_group_id,
            "system_id": self.config.system_id,
            "status": status,
            "action_id": action.action_id,
        }
        if action.snapshot_id and action.is_transfer:
            body["snapshot_id"] = action.snapshot_id
        else:
            body["dataset"] = action.dataset
        if message:
            body["error_message"] = message
        if bytes_moved is not None:
            body["bytes_transferred"] = bytes_moved
        if seconds is not None:
            body["duration_seconds"] = round(seconds, 3)
        self._post(body, action.dataset)

    def _claim_raw(self, raw: dict[str, Any], message: str) -> None:
        """Report a refused action, using only the ids that look like ids."""
        body: dict[str, Any] = {"system_id": self.config.system_id, "status": "error",
                                "error_message": message}
        for key in ("sync_group_id", "snapshot_id", "action_id"):
            value = raw.get(key)
            if isinstance(value, str) and validate._ID.fullmatch(value):
                body[key] = value
        if "sync_group_id" not in body:
            return  # nothing the witness could file it under
        dataset = raw.get("dataset")
        if not isinstance(dataset, str) or not validate.is_logical(dataset):
            dataset = None
        if "snapshot_id" not in body:
            if dataset is None:
                return
            body["dataset"] = dataset
        self._post(body, dataset)

    def _post(self, body: dict[str, Any], dataset: str | None = None) -> None:
        if self.client is None:
            return
        try:
            self.client.post_state(body)
            return
        except WitnessError as exc:
            failure = exc
        if failure.status == 404 and "snapshot_id" in body and dataset is not None:
            # The witness no longer knows the snapshot (pruned, or the source re-reported
            # without it, while the action ran): file the claim under its dataset instead,
            # or an `error` would be lost.
            retry = {k: v for k, v in body.items() if k != "snapshot_id"} | {"dataset": dataset}
            try:
                self.client.post_state(retry)
                return
            except WitnessError as exc:
                failure = exc
        log.warning("could not report state %s: %s", body.get("status"), failure)

    # --- dry run ----------------------------------------------------------------------------

    def _print_chain(self, chain: _Chain) -> None:
        for item in chain.items:
            action = item.action
            if action is None:
                print(f"# REFUSED: {item.refusal}", file=self.out)
                self._record(Outcome(str(item.raw.get("action_id")), chain.target, "error",
                                     item.refusal or ""))
                break
            print(f"# {action.describe()} (sequence {action.sequence}, "
                  f"action {action.action_id})", file=self.out)
            if action.is_transfer and action.source is None:
                print(f"# cannot run: {action.reason}", file=self.out)
                break
            try:
                lines = self.runner.commands(action)
            except (ZfsError, ValueError) as exc:
                print(f"# cannot plan: {exc}", file=self.out)
                break
            for line in lines:
                print(line, file=self.out)
            self._record(Outcome(action.action_id, action.target_dataset, "planned",
                                 action_type=action.action_type))


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{count} B"
        value /= 1024
    return f"{count} B"

