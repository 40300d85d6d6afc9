#!/bin/sh
# sanoid pre-pruning hook: keep a snapshot that the zfs-sync witness protects.
#
# In /etc/sanoid/sanoid.conf, in the template or dataset section:
#   pre_pruning_script = /usr/local/lib/zfs-sync/sanoid-pre-prune.sh
#   script_timeout = 30
#
# sanoid runs it before destroying each snapshot, with SANOID_TARGET (the dataset) and
# SANOID_SNAPNAME (the snapshot) in the environment, and skips the prune when it exits
# non-zero. `zfs-sync-agent may-destroy` exits 0 only when the witness does not protect the
# snapshot (a replication base, or owed to a target that is behind); when the witness cannot
# be asked it exits 2, so the snapshot is kept.
#
# ZFS_SYNC_AGENT: the agent command (default: zfs-sync-agent on PATH);
# ZFS_SYNC_AGENT_CONFIG: its config (default: /etc/zfs-sync/agent.yaml).
set -u
AGENT=${ZFS_SYNC_AGENT:-zfs-sync-agent}
if [ -n "${SANOID_TARGET:-}" ] && [ -n "${SANOID_SNAPNAME:-}" ]; then
    case "$SANOID_TARGET" in
        *@*) SNAPSHOT=$SANOID_TARGET ;;
        *) SNAPSHOT=$SANOID_TARGET@$SANOID_SNAPNAME ;;
    esac
    exec "$AGENT" may-destroy "$SNAPSHOT"
fi
echo "sanoid-pre-prune.sh: SANOID_TARGET and SANOID_SNAPNAME are not set; keeping it" >&2
exit 2
