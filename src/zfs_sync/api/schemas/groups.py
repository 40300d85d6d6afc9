"""Sync group bodies, and the rules a group must satisfy as a whole (DESIGN.md §4, §7).

Shape rules that need no stored state (types, name grammar, duplicate members, both
``system_ids`` and ``members``) are pydantic validators. The directional rules are checked on
the group as it *would be* after a request (``GroupShape``), so a partial update is judged
together with what is stored before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from zfs_sync.api.schemas.common import DatasetGlob, DatasetName, OutModel, StrictModel
from zfs_sync.domain import names

MIN_INTERVAL = 60
MAX_INTERVAL = 31 * 86400
MAX_MEMBERS = 1000
MAX_DATASET_GLOBS = 1000


def validate_group_name(value: str) -> str:
    if not 1 <= len(value) <= 100:
        raise ValueError("group name must be 1 to 100 characters long")
    if not value.isprintable():
        raise ValueError("group name may contain only printable characters (no newlines or tabs)")
    if value != value.strip():
        raise ValueError("group name may not start or end with whitespace")
    return value


def validate_snapshot_pattern(value: str) -> str:
    """A glob on snapshot names; ``""`` means every snapshot."""
    return value if value == "" else names.validate_snapshot_glob(value)


def _null_is_empty(value: Any) -> Any:
    return "" if value is None else value


GroupName = Annotated[str, AfterValidator(validate_group_name)]
SystemId = Annotated[str, Field(min_length=1, max_length=36)]
Description = Annotated[str, BeforeValidator(_null_is_empty), Field(max_length=4096)]
SnapshotPattern = Annotated[
    str,
    BeforeValidator(_null_is_empty),
    AfterValidator(validate_snapshot_pattern),
    Field(description='Glob on snapshot names (e.g. "autosnap_*_daily"); "" = all.'),
]
Interval = Annotated[int, Field(ge=MIN_INTERVAL, le=MAX_INTERVAL)]
DatasetGlobs = Annotated[
    list[DatasetGlob],
    Field(max_length=MAX_DATASET_GLOBS, description="Logical dataset globs; empty = all."),
]


class MemberIn(StrictModel):
    system_id: SystemId
    root: DatasetName | None = Field(
        None,
        description="Dataset under which the group's datasets live on this host "
        "(e.g. `backup/hostA`); null = the host's pool.",
    )
    hostname: str | None = Field(
        default=None,
        max_length=255,
        description="Ignored: accepted so that a GET's `members` can be sent back as is.",
    )


def _unique_ids(ids: list[str]) -> list[str]:
    seen: set[str] = set()
    for system_id in ids:
        if system_id in seen:
            raise ValueError(f"system {system_id} is listed more than once")
        seen.add(system_id)
    return ids


class _Membership(StrictModel):
    """``system_ids`` or ``members``: two spellings of the membership, never both."""

    system_ids: list[SystemId] | None = Field(None, max_length=MAX_MEMBERS)
    members: list[MemberIn] | None = Field(None, max_length=MAX_MEMBERS)

    @field_validator("system_ids")
    @classmethod
    def _distinct_ids(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _unique_ids(value)

    @field_validator("members")
    @classmethod
    def _distinct_members(cls, value: list[MemberIn] | None) -> list[MemberIn] | None:
        if value is not None:
            _unique_ids([m.system_id for m in value])
        return value

    @model_validator(mode="after")
    def _one_spelling(self) -> _Membership:
        if self.system_ids is not None and self.members is not None:
            raise ValueError(
                "give either system_ids or members, not both (members also carries each root)"
            )
        return self

    def wanted_members(self, current_roots: dict[str, str | None]) -> list[MemberIn] | None:
        """The membership this body asks for, or None when it does not touch it.

        ``system_ids`` keeps the root of every system that stays a member, so the guide's
        ``.system_ids + ["new-id"]`` does not reset the other members' roots.
        """
        if self.members is not None:
            return list(self.members)
        if self.system_ids is not None:
            return [MemberIn(system_id=i, root=current_roots.get(i)) for i in self.system_ids]
        return None


class SyncGroupCreate(_Membership):
    name: GroupName
    description: Description = ""
    enabled: bool = True
    sync_interval_seconds: Interval = 3600
    directional: bool = False
    hub_system_id: SystemId | None = Field(
        None, description="The only source of a directional group; must be a member."
    )
    datasets: DatasetGlobs = Field(default_factory=list)
    snapshot_pattern: SnapshotPattern = ""
    allow_rollback: bool = False

    @field_validator("datasets", mode="before")
    @classmethod
    def _null_datasets(cls, value: Any) -> Any:
        return [] if value is None else value

    def fields(self) -> dict[str, Any]:
        return self.model_dump(exclude={"system_ids", "members"})


NOT_NULL = ("name", "enabled", "sync_interval_seconds", "directional", "allow_rollback",
            "system_ids", "members")


class SyncGroupUpdate(_Membership):
    """Partial update: only the fields sent change. ``system_ids``/``members`` replace the
    membership; ``directional: false`` clears the hub; ``null`` empties description,
    datasets and snapshot_pattern."""

    name: GroupName | None = None
    description: Description | None = None
    enabled: bool | None = None
    sync_interval_seconds: Interval | None = None
    directional: bool | None = None
    hub_system_id: SystemId | None = None
    datasets: DatasetGlobs | None = None
    snapshot_pattern: SnapshotPattern | None = None
    allow_rollback: bool | None = None

    @field_validator(*NOT_NULL)
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Runs only for values that were sent: an explicit null is refused, an absent field
        # keeps its stored value.
        if value is None:
            raise ValueError("cannot be null; send a value or leave the field out")
        return value

    def fields(self) -> dict[str, Any]:
        """The group columns this request sets (membership excluded)."""
        changes = self.model_dump(exclude_unset=True, exclude={"system_ids", "members"})
        for field, empty in (("description", ""), ("snapshot_pattern", ""), ("datasets", [])):
            if field in changes and changes[field] is None:
                changes[field] = empty
        if changes.get("directional") is False and "hub_system_id" not in changes:
            changes["hub_system_id"] = None
        return changes


class MemberPublic(OutModel):
    system_id: str
    hostname: str
    root: str | None


class SyncGroupPublic(OutModel):
    id: str
    name: str
    description: str
    enabled: bool
    sync_interval_seconds: int
    directional: bool
    hub_system_id: str | None
    system_ids: list[str] = Field(description="Member ids, in the order of their hostnames.")
    members: list[MemberPublic]
    datasets: list[str]
    snapshot_pattern: str
    allow_rollback: bool
    created_at: datetime
    updated_at: datetime


# -- rules on the whole group ---------------------------------------------------------------


@dataclass(frozen=True)
class GroupShape:
    """What the directional rules look at, after a request is applied."""

    directional: bool
    hub_system_id: str | None
    member_ids: list[str]


class GroupRuleError(ValueError):
    def __init__(self, code: str, field: str, detail: str, hint: str) -> None:
        super().__init__(detail)
        self.code = code
        self.field = field
        self.detail = detail
        self.hint = hint


def check_group_shape(shape: GroupShape) -> None:
    """A directional group has a hub that is one of its members; a bidirectional one none."""
    hub = shape.hub_system_id
    if shape.directional and hub is None:
        raise GroupRuleError(
            "E_HUB_REQUIRED",
            "hub_system_id",
            "A directional group needs a hub_system_id (its only source).",
            "Send hub_system_id (one of the members) with directional=true, "
            "or set directional=false for a bidirectional group.",
        )
    if not shape.directional and hub is not None:
        raise GroupRuleError(
            "E_HUB_NOT_DIRECTIONAL",
            "hub_system_id",
            "hub_system_id is only allowed on a directional group.",
            "Send directional=true with the hub, or leave hub_system_id out "
            "(a bidirectional group has no hub).",
        )
    if hub is not None and hub not in shape.member_ids:
        raise GroupRuleError(
            "E_HUB_NOT_MEMBER",
            "hub_system_id",
            f"The hub {hub} is not a member of the group.",
            "Keep the hub in system_ids/members, choose another member as hub_system_id in the "
            "same request, or set directional=false.",
        )
