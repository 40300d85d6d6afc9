"""Field types shared by the schemas: every name goes through ``domain.names``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from zfs_sync.domain import names
from zfs_sync.domain.parsing import parse_guid, parse_size, parse_timestamp


def _grammar(pattern: str, max_length: int = names.MAX_NAME_LEN) -> Any:
    """The name's grammar in OpenAPI, for clients and fuzzers; ``domain.names`` judges.

    Where a rule is not a regular expression (reserved pool words, ``.``/``..``
    components, bytes rather than characters) the pattern allows more than the validator.
    """
    return Field(json_schema_extra={"pattern": pattern, "minLength": 1, "maxLength": max_length})


_ZFS_COMPONENT = r"[A-Za-z0-9_.: ][A-Za-z0-9_.: -]*"
_ZFS_PATH = rf"{_ZFS_COMPONENT}(/{_ZFS_COMPONENT})*"

Hostname = Annotated[
    str, AfterValidator(names.validate_hostname), _grammar(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
]
SshHostname = Annotated[
    str,
    AfterValidator(names.validate_ssh_hostname),
    _grammar(r"^([A-Za-z0-9_][A-Za-z0-9_.:-]*|\[[0-9A-Fa-f:.]+\])$"),
]
SshUser = Annotated[
    str, AfterValidator(names.validate_ssh_user), _grammar(r"^[A-Za-z_][A-Za-z0-9_.-]*\$?$", 64)
]
CommandPath = Annotated[
    str,
    AfterValidator(names.validate_command_path),
    _grammar(r"^/?[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*$"),
]
PoolName = Annotated[
    str, AfterValidator(names.validate_pool_name), _grammar(r"^[A-Za-z][A-Za-z0-9_.: -]*$")
]
DatasetName = Annotated[
    str,
    AfterValidator(names.validate_dataset_name),
    _grammar(rf"^[A-Za-z][A-Za-z0-9_.: -]*(/{_ZFS_COMPONENT})*$"),
]
LogicalDataset = Annotated[
    str, AfterValidator(names.validate_relative_dataset), _grammar(rf"^{_ZFS_PATH}$")
]
SnapshotName = Annotated[
    str, AfterValidator(names.validate_snapshot_name), _grammar(rf"^{_ZFS_COMPONENT}$")
]
DatasetGlob = Annotated[str, AfterValidator(names.validate_dataset_glob)]
SnapshotGlob = Annotated[str, AfterValidator(names.validate_snapshot_glob)]
Platform = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
]

Timestamp = Annotated[datetime, BeforeValidator(parse_timestamp)]
SizeIn = Annotated[int | None, BeforeValidator(parse_size)]
GuidIn = Annotated[int | None, BeforeValidator(parse_guid)]
# Guids exceed JSON's safe integer range: they travel as decimal strings.
GuidOut = Annotated[
    int | None, PlainSerializer(lambda v: None if v is None else str(v), return_type=str | None)
]
Metadata = Annotated[dict[str, Any], Field(description="Free-form JSON object.")]


class StrictModel(BaseModel):
    """Request bodies: unknown fields are an error, so typos don't pass silently."""

    model_config = ConfigDict(extra="forbid")


class OutModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErrorItem(BaseModel):
    loc: list[str | int] = Field(description='Where, e.g. `["body", "snapshots", 0, "name"]`.')
    msg: str


class ErrorOut(BaseModel):
    """The body of every error response (DESIGN.md §5)."""

    detail: str = Field(description="One readable sentence.")
    code: str = Field(description="A stable code such as `E_VALIDATION`.")
    hint: str = Field(description="What to do about it (may be empty).")
    errors: list[ErrorItem] | None = Field(
        None, description="Each invalid value, on validation failures."
    )
