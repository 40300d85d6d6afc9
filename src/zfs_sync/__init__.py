"""zfs-sync: keep ZFS snapshots in sync across a fleet of hosts."""

__version__ = "0.1.0"
