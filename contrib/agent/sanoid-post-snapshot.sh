#!/bin/sh
# sanoid post-snapshot hook: report the new snapshots to the witness right away, instead of
# at the agent's next cycle (which reports them anyway).
#
# In /etc/sanoid/sanoid.conf:
#   post_snapshot_script = /usr/local/lib/zfs-sync/sanoid-post-snapshot.sh
#   script_timeout = 30
#
# A failed report never fails sanoid's snapshot run (exit 0): the next cycle reports again.
AGENT=${ZFS_SYNC_AGENT:-zfs-sync-agent}
"$AGENT" report >/dev/null || echo "sanoid-post-snapshot.sh: report failed; the agent's next cycle retries" >&2
exit 0
