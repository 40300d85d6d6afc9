"""What the agent reports: the local datasets and snapshots, as the witness's full-state
report (``PUT /systems/{id}/snapshots``) wants them."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from zfs_sync.agent.config import AgentConfig
from zfs_sync.agent.zfs import Dataset, Snapshot, Zfs
from zfs_sync.domain import names

log = logging.getLogger("zfs_sync.agent.inventory")


class PoolMissing(RuntimeError):
    """A pool of the ``datasets`` filter is not imported: reporting now would make the
    witness forget every snapshot on it."""


def read_datasets(
    config: AgentConfig, zfs: Zfs, only: Sequence[str] | None = None
) -> list[Dataset]:
    """The datasets in the agent's filter (or just ``only``), with their snapshots."""
    roots = config.datasets.roots() if only is None else _existing_roots(only)
    wanted = config.datasets.matches
    if only is None and roots is not None:
        _check_pools(zfs, roots)
    if only is not None:
        chosen = set(only)
        return [d for d in zfs.list_datasets(roots, wanted) if d.name in chosen]
    return zfs.list_datasets(roots, wanted)


def _check_pools(zfs: Zfs, roots: Sequence[str]) -> None:
    # A missing dataset under an imported pool is fine (it may arrive by a first receive);
    # a missing pool usually means "not imported yet" (early boot, a failed disk).
    for pool in sorted({names.pool_of(root) for root in roots}):
        if not zfs.exists(pool):
            raise PoolMissing(f"pool {pool} (in the datasets filter) is not imported; not "
                              "reporting, so that the witness keeps its snapshots on record")


def _existing_roots(datasets: Sequence[str]) -> tuple[str, ...]:
    unique = sorted(set(datasets))
    return tuple(d for d in unique if not any(d.startswith(o + "/") for o in unique))


def _acceptable(dataset: Dataset) -> bool:
    # A name the witness would reject (422) would fail the whole report, so it is left out
    # here, loudly, instead.
    try:
        names.validate_dataset_name(dataset.name)
        return True
    except names.InvalidName as exc:
        log.warning("not reporting dataset %r: %s", dataset.name, exc)
        return False


def _snapshot_item(snap: Snapshot) -> dict[str, Any] | None:
    try:
        names.validate_snapshot_name(snap.name)
    except names.InvalidName as exc:
        log.warning("not reporting snapshot %r: %s", snap.full_name, exc)
        return None
    if snap.creation is None:
        log.warning("not reporting snapshot %s: zfs gave no creation time", snap.full_name)
        return None
    item: dict[str, Any] = {"dataset": snap.dataset, "name": snap.name,
                            "timestamp": snap.creation}
    if snap.guid is not None:
        item["guid"] = str(snap.guid)  # unsigned 64-bit: a string survives every JSON parser
    for key in ("createtxg", "used", "referenced"):
        value = getattr(snap, key)
        if value is not None:
            item[key] = value
    return item


def report_body(datasets: Iterable[Dataset]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(snapshots, datasets) for the full-state report."""
    snapshots: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    for dataset in datasets:
        if not _acceptable(dataset):
            continue
        records.append({
            "name": dataset.name,
            "encryption": dataset.encryption,
            "receive_resume_token": dataset.receive_resume_token,
        })
        for snap in dataset.snapshots:
            item = _snapshot_item(snap)
            if item is not None:
                snapshots.append(item)
    return snapshots, records
