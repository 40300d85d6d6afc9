"""Snapshot reports as hosts and the guide's scripts send them, and the query answers.

A report item is lenient in form and strict in content: ``name`` may be ``snap`` or
``pool/ds@snap``, ``dataset`` full or relative to ``pool``, ``pool`` may carry the ``@snap``
suffix that the guide's cron script leaves on a pool's root dataset, and sizes and times come
in every form ``zfs list`` and ``awk`` print (``domain/parsing.py``). Every name still goes
through ``domain/names.py``, and each error names its field (and item index).

Items are read by ``read_snapshot`` rather than by a pydantic model: an agent's full report
carries tens of thousands of them, and a model with per-field validators cost ~15 µs an item
(measured) against ~3 µs here, where the name checks are also cached because a report repeats
the same datasets and snapshot names many times. Pydantic still checks the envelope, and
``SnapshotItem`` documents the item in OpenAPI.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from functools import lru_cache
from typing import Annotated, Any

from fastapi.exceptions import RequestValidationError
from pydantic import ConfigDict, Field, TypeAdapter, WithJsonSchema, model_validator

# pydantic needs typing_extensions' TypedDict before Python 3.12.
from typing_extensions import NotRequired, TypedDict  # noqa: UP035

from zfs_sync.api.schemas.common import DatasetName, GuidOut, OutModel, StrictModel
from zfs_sync.domain import names
from zfs_sync.domain.parsing import MAX_INT64, parse_guid, parse_size, parse_timestamp
from zfs_sync.storage.snapshots import SnapshotFacts

_CACHE = 1 << 16
_MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z, as in domain/parsing.py
MAX_ERRORS = 100  # a report with thousands of bad items answers with the first hundred


class SnapshotItem(TypedDict):
    """One snapshot in a report (OpenAPI documentation of what ``read_snapshot`` accepts)."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    system_id: NotRequired[Annotated[str, Field(description="The reporting system's id.")]]
    name: Annotated[str, Field(description="Snapshot name: `snap` or `pool/dataset@snap`.")]
    pool: NotRequired[
        Annotated[
            str | None,
            Field(
                description="Pool; derived from the dataset when missing. A trailing `@snap` "
                "(the guide's cron script sends `rpool@install` for a root dataset) is ignored."
            ),
        ]
    ]
    dataset: NotRequired[
        Annotated[
            str | None,
            Field(
                description="Full dataset (`tank/data`), or one component relative to `pool` "
                "(`data`); may be left out when `name` is `pool/dataset@snap`."
            ),
        ]
    ]
    timestamp: Annotated[
        str | int | float,
        Field(
            description="Creation time: ISO 8601 (naive = UTC), epoch seconds, or zfs list's "
            "`Thu Nov 26 19:22 2026` (UTC)."
        ),
    ]
    size: NotRequired[
        Annotated[
            int | float | str | None,
            Field(description="The `used` property: bytes, `2.14748e+09`, or `88K`/`1.5G`."),
        ]
    ]
    used: NotRequired[Annotated[int | float | str | None, Field(description="Same as `size`.")]]
    referenced: NotRequired[int | float | str | None]
    guid: NotRequired[
        Annotated[int | str | None, Field(description="Unsigned 64-bit: number or decimal string.")]
    ]
    createtxg: NotRequired[int | str | None]


ITEM_SCHEMA = TypeAdapter(SnapshotItem).json_schema()
ITEM_CREATE_SCHEMA = {**ITEM_SCHEMA, "required": sorted({*ITEM_SCHEMA["required"], "system_id"})}
_FIELDS = frozenset(ITEM_SCHEMA["properties"])

# Items are checked by read_snapshot, not by pydantic (see the module docstring).
RawSnapshot = Annotated[Any, WithJsonSchema(ITEM_SCHEMA)]
RawSnapshotCreate = Annotated[Any, WithJsonSchema(ITEM_CREATE_SCHEMA)]


@lru_cache(maxsize=_CACHE)
def clean_pool(value: str) -> str:
    # The guide's cron script cuts the pool at the first '/', which leaves `rpool@install`
    # for a snapshot of the pool's root dataset: the pool is the part before '@'.
    return names.validate_pool_name(value.partition("@")[0])


@lru_cache(maxsize=_CACHE)
def split_snapshot_name(value: str) -> tuple[str | None, str]:
    """``snap`` -> (None, snap); ``pool/ds@snap`` -> (pool/ds, snap)."""
    if "@" in value:
        return names.validate_full_snapshot(value)
    return None, names.validate_snapshot_name(value)


@lru_cache(maxsize=_CACHE)
def resolve_dataset(dataset: str, pool: str | None) -> tuple[str, str]:
    """(full dataset, its pool): ``dataset`` is full, or one component relative to ``pool``."""
    if pool is None or dataset == pool or dataset.startswith(pool + "/"):
        full = names.validate_dataset_name(dataset)
    elif "/" not in dataset:
        full = names.validate_dataset_name(f"{pool}/{names.validate_relative_dataset(dataset)}")
    else:
        # `other/data` with pool `tank`: a full name on another pool, or a path under `tank`?
        # Guessing could file the snapshot under the wrong dataset, so say so instead.
        names.validate_dataset_name(dataset)
        raise ValueError(
            f"pool {pool!r} contradicts dataset {dataset!r} (whose pool is "
            f"{names.pool_of(dataset)!r}); send the full dataset name, starting with its pool"
        )
    return full, names.pool_of(full)


class InvalidItem(Exception):
    """What is wrong with a reported snapshot: the first bad field (None: the item itself)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _txg(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ValueError("createtxg must be a non-negative 64-bit integer")
    return value


def read_snapshot(raw: Any, *, require_system: bool = False) -> SnapshotFacts:
    """Validate and normalise one reported snapshot, or raise ``InvalidItem``.

    One straight pass (``field`` tracks where we are): this runs for every snapshot of every
    report, so it avoids a function call per field; the name checks behind it are cached.
    """
    if type(raw) is not dict:
        raise InvalidItem(None, "Input should be a valid dictionary (a JSON object)")
    field = ""
    try:
        if not _FIELDS.issuperset(raw):
            field = min(raw.keys() - _FIELDS)
            raise ValueError("Extra inputs are not permitted")
        field = "system_id"
        system_id = raw.get("system_id")
        if system_id is None:
            if require_system:
                raise KeyError(field)
        elif type(system_id) is not str or not 0 < len(system_id) <= 36:
            raise ValueError("must be a system id (a string of 1 to 36 characters)")
        field = "pool"
        pool = raw.get("pool")
        if pool is not None:
            pool = clean_pool(pool)
        field = "name"
        parent, name = split_snapshot_name(raw["name"])
        if parent is not None and pool is not None and names.pool_of(parent) != pool:
            raise ValueError(f"the snapshot {parent}@{name} is not on pool {pool!r}")
        field = "dataset"
        dataset = raw.get("dataset")
        if dataset is None:
            if parent is None:
                raise ValueError("Field required (or send name as pool/dataset@snap)")
            dataset, pool = parent, names.pool_of(parent)
        else:
            dataset, pool = resolve_dataset(dataset, pool)
            if parent is not None and parent != dataset:
                raise ValueError(f"{dataset!r} contradicts the snapshot name {parent}@{name}")
        # Fast paths for what agents send (epoch seconds, byte counts, guid strings); every
        # other form goes to the shared parsers, which give the same result for these.
        field = "timestamp"
        value = raw["timestamp"]
        if type(value) is int and 0 <= value <= _MAX_EPOCH:
            timestamp = datetime.fromtimestamp(value, timezone.utc)
        else:
            timestamp = parse_timestamp(value)
        field = "size"
        value = raw.get("size")
        size = value if type(value) is int and 0 <= value <= MAX_INT64 else parse_size(value)
        field = "used"
        value = raw.get("used")
        used = value if type(value) is int and 0 <= value <= MAX_INT64 else parse_size(value)
        if used is not None:
            if size is not None and size != used:
                raise ValueError("size and used are the same property, and they differ here")
            size = used
        field = "referenced"
        value = raw.get("referenced")
        referenced = value if type(value) is int and 0 <= value <= MAX_INT64 else parse_size(value)
        field = "guid"
        value = raw.get("guid")
        if type(value) is str and value.isascii() and value.isdigit() and len(value) <= 20:
            guid: int | None = int(value)
            if guid >= 2**64:  # type: ignore[operator]
                raise ValueError("a guid must be an unsigned 64-bit integer")
        else:
            guid = parse_guid(value)
        field = "createtxg"
        value = raw.get("createtxg")
        createtxg = value if type(value) is int and 0 <= value <= MAX_INT64 else _txg(value)
    except KeyError:
        raise InvalidItem(field, "Field required") from None
    except ValueError as exc:  # names.InvalidName is a ValueError too
        raise InvalidItem(field, str(exc)) from None
    except (TypeError, AttributeError):  # e.g. a number or a list where a name belongs
        kind = type(raw.get(field)).__name__
        raise InvalidItem(field, f"must be a string, not {kind}") from None
    return SnapshotFacts(
        system_id, pool, dataset, name, timestamp, guid, createtxg, size, referenced
    )


def read_snapshots(
    items: Sequence[Any], loc: Sequence[str | int], *, require_system: bool = False
) -> list[SnapshotFacts]:
    """Read every item; any error -> 422 naming each bad item's index and field."""
    facts: list[SnapshotFacts] = []
    errors: list[dict[str, Any]] = []
    for index, raw in enumerate(items):
        try:
            facts.append(read_snapshot(raw, require_system=require_system))
        except InvalidItem as exc:
            errors.append(_error([*loc, index], exc, raw))
            if len(errors) >= MAX_ERRORS:
                break
    if errors:
        raise RequestValidationError(errors)
    return facts


def read_one(raw: Any, loc: Sequence[str | int]) -> tuple[str, SnapshotFacts]:
    """One snapshot that names its system: (system id, snapshot), or 422."""
    try:
        facts = read_snapshot(raw, require_system=True)
    except InvalidItem as exc:
        raise RequestValidationError([_error(list(loc), exc, raw)]) from None
    return str(facts.system_id), facts


def _error(loc: list[str | int], exc: InvalidItem, raw: Any) -> dict[str, Any]:
    if exc.field is not None:
        loc = [*loc, exc.field]
    return {"type": "value_error", "loc": tuple(loc), "msg": exc.message}


class SnapshotBatch(StrictModel):
    """``{"snapshots": [...]}``; a bare JSON array of snapshots is accepted too."""

    snapshots: list[RawSnapshotCreate]

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

    snapshots: list[RawSnapshot] | None = Field(
        None,
        description="Every snapshot (within scope); `system_id` optional. Left out = kept "
        "(to update only the dataset records); `[]` = the system has none.",
    )
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
        None, description="The dataset under the system's root (null when the root is unknown)."
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
    root_1: str | None = Field(description="Null when the system has no snapshots.")
    root_2: str | None
    datasets: list[DatasetDifference]


class SystemGap(OutModel):
    system_id: str
    root: str | None = Field(description="Null when the system has no snapshots at all.")
    dataset: str | None
    snapshot_count: int
    missing_count: int
    missing: list[SnapshotRef]


class Gaps(OutModel):
    logical_dataset: str
    union_count: int
    systems: list[SystemGap]


def check_full_report(
    system_id: str, facts: list[SnapshotFacts] | None, body: FullReport
) -> None:
    """Items of a full report belong to the path's system and lie within the scope."""
    scope = None if body.scope is None else set(body.scope)
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(facts or []):
        if item.system_id is not None and item.system_id != system_id:
            errors.append(_loc_error(("snapshots", index, "system_id"),
                                     f"is {item.system_id}, not the path's {system_id}"))
        if scope is not None and item.dataset not in scope:
            errors.append(_loc_error(("snapshots", index, "dataset"),
                                     f"{item.dataset!r} is outside the report's scope"))
    if scope is not None:
        for index, dataset in enumerate(body.datasets or []):
            if dataset.name not in scope:
                errors.append(_loc_error(("datasets", index, "name"),
                                         f"{dataset.name!r} is outside the report's scope"))
    if errors:
        raise RequestValidationError(errors[:MAX_ERRORS])


def _loc_error(loc: tuple[str | int, ...], msg: str) -> dict[str, Any]:
    return {"type": "value_error", "loc": ("body", *loc), "msg": msg}
