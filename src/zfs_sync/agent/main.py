"""``zfs-sync-agent``: the command line (argparse, stdlib only, Python 3.9+)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

import yaml

from zfs_sync.agent import AGENT_NAME, __version__
from zfs_sync.agent import config as cfg
from zfs_sync.agent.client import WitnessError
from zfs_sync.agent.inventory import PoolMissing
from zfs_sync.agent.lock import LockBusy
from zfs_sync.agent.zfs import ZfsError

log = logging.getLogger("zfs_sync.agent")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_WITNESS, EXIT_ZFS = 0, 1, 2, 3, 4
DESCRIPTION = """\
The zfs-sync host agent: reports this host's ZFS snapshots and heartbeats to the witness,
fetches the witness's instructions and carries them out (this host pulls from its sources
over ssh: ssh SOURCE zfs send ... | zfs receive ...), and reports the results.

Run `zfs-sync-agent register` once, then `zfs-sync-agent run` from a systemd timer or cron
(or `zfs-sync-agent daemon`). See docs/agent.md."""


def _commands() -> dict[str, Callable[[argparse.Namespace], int]]:
    from zfs_sync.agent import commands

    return {
        "register": commands.cmd_register,
        "report": commands.cmd_report,
        "heartbeat": commands.cmd_heartbeat,
        "sync": commands.cmd_sync,
        "run": commands.cmd_run,
        "daemon": commands.cmd_daemon,
        "status": commands.cmd_status,
        "may-destroy": commands.cmd_may_destroy,
        "config-check": commands.cmd_config_check,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=AGENT_NAME, description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{AGENT_NAME} {__version__}")
    parser.add_argument("-c", "--config", metavar="PATH",
                        help=f"config file (default: ${cfg.CONFIG_ENV}, else "
                             f"{cfg.DEFAULT_CONFIG_PATH})")
    parser.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="override the config's log_level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _register_parser(sub)
    sub.add_parser("report", help="report this host's datasets and snapshots (full state)",
                   description="Read the local datasets and snapshots (within the `datasets` "
                   "filter) and send them to the witness as this system's full state.")
    hb = sub.add_parser("heartbeat", help="tell the witness this host is alive",
                        description="Send a heartbeat with the agent and zfs versions, the "
                        "zfs path and the ZFS capabilities this host has.")
    hb.add_argument("--interval", type=int, metavar="SECONDS",
                    help="the period you run the agent at (default: interval_seconds)")
    sync = sub.add_parser("sync", help="carry out the witness's instructions",
                          description="Fetch the instructions, vet every action, run them "
                          "(in sequence per dataset) and report each result.")
    sync.add_argument("--dry-run", action="store_true",
                      help="print the exact commands and change nothing")
    sub.add_parser("run", help="one cycle: report, heartbeat, sync, heartbeat (for timers/cron)",
                   description="One cycle under the per-system lock; if another cycle holds "
                   "the lock, exit 0 quietly.")
    daemon = sub.add_parser("daemon", help="run cycles forever",
                            description="Run a cycle every --interval seconds until SIGTERM.")
    daemon.add_argument("--interval", type=int, metavar="SECONDS",
                        help="seconds between cycle starts (default: interval_seconds)")
    sub.add_parser("status", help="show this host as the witness sees it",
                   description="Health, sync states and pending actions of this system.")
    may = sub.add_parser(
        "may-destroy", help="exit 0 only if the witness does not protect SNAPSHOT",
        description="For pruning hooks (sanoid's pre_pruning_script): exit 0 if SNAPSHOT may "
        "be destroyed, 1 if the witness protects it (a replication base, or owed to a target "
        "that is behind), 2 if that cannot be determined. Without SNAPSHOT, uses sanoid's "
        "$SANOID_TARGET and $SANOID_SNAPNAME.")
    may.add_argument("snapshot", nargs="?", metavar="SNAPSHOT", help="pool/dataset@snapshot")
    check = sub.add_parser("config-check", help="validate the config, zfs and the witness",
                           description="Parse the config strictly, show the effective "
                           "settings (key masked), detect zfs's capabilities and check that "
                           "the witness accepts the key.")
    check.add_argument("--offline", action="store_true", help="do not contact the witness")
    check.add_argument("--reference", action="store_true",
                       help="print the config reference (Markdown) and exit")
    return parser


def _register_parser(sub: Any) -> None:
    reg = sub.add_parser(
        "register", help="register this host with the witness and write the config",
        description="Register this host (needs the admin token) and write the config file "
        "with the new system id and API key (mode 0600).")
    reg.add_argument("--server", required=True, metavar="URL", help="the witness's URL")
    reg.add_argument("--admin-token", metavar="TOKEN",
                     help="admin token (default: $ZFS_SYNC_ADMIN_TOKEN)")
    reg.add_argument("--admin-token-file", metavar="PATH", help="file holding the admin token")
    reg.add_argument("--hostname", help="name to register (default: this host's name)")
    reg.add_argument("--platform", help="platform (default: this OS, e.g. linux)")
    reg.add_argument("--ssh-hostname", help="address other hosts reach this one at over ssh")
    reg.add_argument("--ssh-user", help="ssh user other hosts log in as to pull from here")
    reg.add_argument("--ssh-port", type=int, default=22, help="ssh port (default 22)")
    reg.add_argument("--zfs-path", default="zfs", help="the zfs command (default zfs)")
    reg.add_argument("--include", action="append", default=[], metavar="GLOB",
                     help="datasets to report and receive into (repeatable)")
    reg.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                     help="datasets to leave out (repeatable)")
    reg.add_argument("--api-key-file", metavar="PATH",
                     help="write the API key to this file (mode 0600) instead of the config")
    reg.add_argument("--replace", action="store_true",
                     help="take over an existing registration of this hostname (new hardware)")
    reg.add_argument("--force", action="store_true", help="overwrite an existing config file")


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))


STOP = threading.Event()
_SIGNALLED: list[int] = []
_PREVIOUS: dict[int, Any] = {}


def install_signal_handlers() -> None:
    """SIGTERM/SIGINT: stop after (or abort) the current transfer, report, release the lock."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if STOP.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.warning("received %s: stopping", signal.Signals(signum).name)
        _SIGNALLED.append(signum)
        STOP.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        _PREVIOUS.setdefault(signum, signal.signal(signum, handle))


def _restore_signal_handlers() -> None:
    """Put back what was there (main() may run inside another program, e.g. the tests)."""
    for signum, previous in _PREVIOUS.items():
        signal.signal(signum, previous)
    _PREVIOUS.clear()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging(args.log_level or "INFO")
    STOP.clear()
    _SIGNALLED.clear()
    try:
        code = _commands()[args.command](args)
    except cfg.ConfigError as exc:
        print(f"{AGENT_NAME}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except LockBusy as exc:
        log.info("%s; exiting", exc)
        return EXIT_OK
    except WitnessError as exc:
        log.error("%s", exc)
        return EXIT_WITNESS
    except (ZfsError, PoolMissing) as exc:
        log.error("%s", exc)
        return EXIT_ZFS
    finally:
        _restore_signal_handlers()
        root.handlers[:], root.level = saved[0], saved[1]
    if _SIGNALLED and args.command != "daemon":  # stopping is how a daemon ends
        return 128 + _SIGNALLED[0]
    return code


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


if __name__ == "__main__":
    sys.exit(main())
