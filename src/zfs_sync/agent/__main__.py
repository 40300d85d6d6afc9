"""``python -m zfs_sync.agent``: the same as the ``zfs-sync-agent`` command."""

from __future__ import annotations

import sys

from zfs_sync.agent.main import main

sys.exit(main())
