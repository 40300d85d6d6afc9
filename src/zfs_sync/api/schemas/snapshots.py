"""Snapshot reports as hosts and the guide's scripts send them, and the query answers.

A report item is lenient in form and strict in content: ``name`` may be ``snap`` or
``pool/ds@snap``, ``dataset`` full or relative to ``pool``, ``pool`` may carry the
``@snap`` suffix the guide's cron script leaves on a pool's root dataset, and sizes and times
come in every form ``zfs list`` and ``awk`` print (``domain/parsing.py``). Every name still goes
through ``domain/names.py``; each error names the field it is about.

Validation of big reports is a hot path (the agent sends a host's whole state): the name
checks are cached, because a report repeats the same datasets and snapshot names many times.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from zfs_sync.api.schemas.common import (
    DatasetName,
    GuidIn,
    GuidOut,
    OutModel,
    SizeIn,
    StrictModel,
    Timestamp,
)
from zfs_sync.domain import names

_CACHE = 1 << 16


@lru_cache(maxsize=_CACHE)
def clean_pool(value: str) -> str:
    # The guide's cron script cuts the pool at the first '/', which leaves `rpool@install`
    # for a snapshot of the pool's root dataset: the pool is the part before '@'.
    return names.validate_pool_name(value.partition("@")[0])


@lru_cache(maxsize=_CACHE)
def _snapshot_name(value: str) -> str:
    if "@" in value:
        names.validate_full_snapshot(value)
        return value
    return names.validate_snapshot_name(value)


@lru_cache(maxsize=_CACHE)
def resolve_dataset(dataset: str, pool: str | None) -> str:
    """The full dataset name: ``dataset`` is full, or one component relative to ``pool``."""
    if pool is None or dataset == pool or dataset.startswith(pool + "/"):
        return names.validate_dataset_name(dataset)
    if "/" not in dataset:
        return names.validate_dataset_name(f"{pool}/{names.validate_relative_dataset(dataset)}")
    # `other/data` with pool `tank`: a full name on another pool, or a path under `tank`?
    # Guessing could file the snapshot under the wrong dataset, so say so instead.
    raise ValueError(
        f"pool {pool!r} contradicts dataset {dataset!r} (whose pool is "
        f"{names.pool_of(dataset)!r}): send the full dataset name starting with the pool"
    )


class SnapshotReport(StrictModel):
    """One snapshot as a host reports it. Field order matters: later checks see earlier ones."""

    system_id: str | None = Field(
        None, max_length=36, description="The reporting system (the path's, on the full report)."
    )
    pool: str | None = Field(
        None,
        max_length=255,
        description="Pool name; derived from the dataset when missing. A trailing `@snap` "
        "(what the guide's cron script sends for a pool's root dataset) is ignored.",
    )
    name: str = Field(
        max_length=512, description="Snapshot name: `snap`, or the full `pool/dataset@snap`."
    )
    dataset: str | None = Field(
        None,
        max_length=255,
        validate_default=True,
        description="Full dataset (`tank/data`), or one component relative to `pool` (`data`). "
        "May be left out when `name` is the full `pool/dataset@snap`.",
    )
    timestamp: Timestamp = Field(
        description="Creation time: ISO 8601 (naive = UTC), epoch seconds, or the zfs list "
        "format `Thu Nov 26 19:22 2026` (UTC)."
    )
    size: SizeIn = Field(None, description="The `used` property: bytes, `2.14748e+09` or `88K`.")
    used: SizeIn = Field(None, description="Synonym of `size`.")
    referenced: SizeIn = None
    guid: GuidIn = Field(None, description="Unsigned 64-bit; a number or a decimal string.")
    createtxg: int | None = Field(None, ge=0)

    @field_validator("pool")
    @classmethod
    def _pool(cls, value: str | None) -> str | None:
        return None if value is None else clean_pool(value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str, info: ValidationInfo) -> str:
        full = _snapshot_name(value)
        pool = info.data.get("pool")
        if pool is not None and "@" in full and names.pool_of(full) != pool:
            raise ValueError(f"the snapshot {full!r} is not on pool {pool!r}")
        return full

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, value: str | None, info: ValidationInfo) -> str | None:
        name = info.data.get("name")
        from_name = name.partition("@")[0] if name and "@" in name else None
        if value is None:
            if name is not None and from_name is None:
                raise ValueError(
                    "dataset is required (or send name as the full pool/dataset@snap)"
                )
            return from_name
        dataset = resolve_dataset(value, info.data.get("pool"))
        if from_name is not None and from_name != dataset:
            raise ValueError(f"dataset {dataset!r} contradicts the snapshot name {name!r}")
        return dataset

    @field_validator("used")
    @classmethod
    def _used(cls, value: int | None, info: ValidationInfo) -> int | None:
        size = info.data.get("size")
        if value is not None and size is not None and value != size:
            raise ValueError("size and used are the same property; they differ here")
        return value

    @model_validator(mode="after")
    def _normalise(self) -> SnapshotReport:
        self.name = self.name.rpartition("@")[2]
        if self.size is None:
            self.size = self.used
        if self.pool is None and self.dataset is not None:
            self.pool = names.pool_of(self.dataset)
        return self


class SnapshotCreate(SnapshotReport):
    system_id: str = Field(max_length=36, description="The reporting system.")


class SnapshotBatch(StrictModel):
    """``{"snapshots": [...]}``; a bare JSON array of snapshots is accepted too."""

    snapshots: list[SnapshotCreate]

    @model_validator(mode="before")
    @classmethod
    def _bare_array(cls, data: Any) -> Any:
        return {"snapshots": data} if isinstance(data, list) else data


class DatasetReport(StrictModel):
    name: DatasetName
    encryption: bool = False
    receive_resume_token: str | None = Field(None, max_length=65536)


class FullReport(StrictModel):
    """The whole state of one system, or of the datasets in ``scope``."""

    snapshots: list[SnapshotReport] = Field(default_factory=list)
    datasets: list[DatasetReport] | None = Field(
        None, description="Replaces the system's dataset records (within scope); left out = kept."
    )
    scope: list[DatasetName] | None = Field(
        None, description="Only these datasets (exact names) are replaced; others are kept."
    )


class BatchResult(OutModel):
    created: int
    updated: int
    count: int


class ReportResult(OutModel):
    created: int
    updated: int
    deleted: int
    unchanged: int


class SnapshotPublic(OutModel):
    id: str
    system_id: str
    pool: str
    dataset: str
    logical_dataset: str | None = Field(
        None, description="The dataset under the system's root (null when it has no root)."
    )
    name: str
    guid: GuidOut
    createtxg: int | None
    timestamp: datetime
    size: int | None
    referenced: int | None
    created_at: datetime
    updated_at: datetime


class DatasetStats(OutModel):
    dataset: str
    count: int
    total_size: int
    oldest: datetime
    newest: datetime


class SnapshotStatistics(OutModel):
    system_id: str
    period_days: int
    period_start: datetime
    total_snapshots: int
    total_size: int
    dataset_count: int
    snapshots_by_dataset: dict[str, int]
    datasets: list[DatasetStats]
    oldest_snapshot: datetime | None
    newest_snapshot: datetime | None
    snapshots_in_period: int
    size_in_period: int


class SnapshotRef(OutModel):
    name: str
    guid: GuidOut
    timestamp: datetime


class Divergence(OutModel):
    name: str
    guid_1: GuidOut
    guid_2: GuidOut


class DatasetDifference(OutModel):
    logical_dataset: str
    dataset_1: str | None
    dataset_2: str | None
    only_on_1: list[SnapshotRef]
    only_on_2: list[SnapshotRef]
    common_count: int
    diverged: list[Divergence]
    in_sync: bool


class Differences(OutModel):
    system_id_1: str
    system_id_2: str
    root_1: str
    root_2: str
    datasets: list[DatasetDifference]


class SystemGap(OutModel):
    system_id: str
    root: str
    dataset: str
    snapshot_count: int
    missing_count: int
    missing: list[SnapshotRef]


class Gaps(OutModel):
    logical_dataset: str
    union_count: int
    systems: list[SystemGap]
