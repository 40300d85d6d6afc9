from __future__ import annotations

from datetime import datetime
from typing import Any

from zfs_sync.api.schemas.common import OutModel


class EventPublic(OutModel):
    id: int
    created_at: datetime
    type: str
    severity: str
    system_id: str | None
    sync_group_id: str | None
    message: str
    data: dict[str, Any]
