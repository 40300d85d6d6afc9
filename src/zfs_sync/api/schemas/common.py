"""Field types shared by the schemas: every name goes through ``domain.names``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from zfs_sync.domain import names
from zfs_sync.domain.parsing import parse_guid, parse_size, parse_timestamp

Hostname = Annotated[str, AfterValidator(names.validate_hostname)]
SshHostname = Annotated[str, AfterValidator(names.validate_ssh_hostname)]
SshUser = Annotated[str, AfterValidator(names.validate_ssh_user)]
CommandPath = Annotated[str, AfterValidator(names.validate_command_path)]
PoolName = Annotated[str, AfterValidator(names.validate_pool_name)]
DatasetName = Annotated[str, AfterValidator(names.validate_dataset_name)]
LogicalDataset = Annotated[str, AfterValidator(names.validate_relative_dataset)]
SnapshotName = Annotated[str, AfterValidator(names.validate_snapshot_name)]
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
