"""Progress of a transfer: a live line on a terminal, a log line now and then otherwise."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from zfs_sync.agent.config import AgentConfig
    from zfs_sync.agent.validate import Action

log = logging.getLogger("zfs_sync.agent.progress")
FIRST_LOG_SECONDS = 10.0  # short transfers log nothing extra


def human(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


class Progress:
    """Called by the pipeline about once a second with (bytes, seconds)."""

    def __init__(self, label: str, estimated: int | None, interval: float,
                 tty: TextIO | None) -> None:
        self.label = label
        self.estimated = estimated
        self.interval = interval
        self.tty = tty
        self._next_log = max(FIRST_LOG_SECONDS, interval)
        self._shown = False

    def line(self, moved: int, seconds: float) -> str:
        rate = moved / seconds if seconds > 0 else 0.0
        text = f"{self.label}: {human(moved)} in {seconds:.0f} s ({human(rate)}/s)"
        if self.estimated:
            text += f", ~{min(100, 100 * moved // self.estimated)}% of {human(self.estimated)}"
        return text

    def __call__(self, moved: int, seconds: float) -> None:
        if self.tty is not None:
            self.tty.write("\r\x1b[K" + self.line(moved, seconds))
            self.tty.flush()
            self._shown = True
        elif seconds >= self._next_log:
            log.info("%s", self.line(moved, seconds))
            self._next_log = seconds + self.interval

    def close(self) -> None:
        if self.tty is not None and self._shown:
            self.tty.write("\n")
            self.tty.flush()


def progress_factory(config: AgentConfig) -> Callable[[Action], Progress]:
    tty = sys.stderr if sys.stderr.isatty() else None

    def make(action: Action) -> Progress:
        return Progress(action.describe(), action.estimated_size,
                        config.progress_interval_seconds, tty)

    return make
