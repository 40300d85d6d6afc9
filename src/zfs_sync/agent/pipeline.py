"""Run ``sender | receiver`` as two processes without a shell, relaying the stream ourselves.

The agent sits between the two processes (instead of joining them with an OS pipe) because
it needs what a shell pipe hides: the bytes moved (progress, rate, the report), a bandwidth
limit, a timeout, and a clean abort on SIGTERM. The relay moves up to 1 MiB per system call
with ``os.splice`` (pipe to pipe inside the kernel; Linux, Python 3.10+), else with
read/write, and widens both pipes to 1 MiB (``bench/agent_throughput.py`` measures the cost).

Aborting stops the *sender* first: the receiver then sees a truncated stream and cleans up
after itself (or keeps a resumable state with ``receive -s``), which is what ZFS expects.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO

CHUNK = 1 << 20
TAIL_BYTES = 4096
KILL_GRACE_SECONDS = 30.0
ENV = {"LC_ALL": "C", "LANG": "C"}

Progress = Callable[[int, float], None]


@dataclass
class Options:
    timeout: float | None = None
    cancel: threading.Event | None = None
    progress: Progress | None = None  # called about once a second with (bytes, seconds)
    bandwidth_limit: int | None = None  # bytes per second
    labels: tuple[str, str] = ("send", "receive")


@dataclass
class Result:
    returncodes: tuple[int | None, ...]
    bytes: int
    seconds: float
    stderr: tuple[str, ...]
    labels: tuple[str, ...]
    timed_out: bool = False
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return not (self.timed_out or self.cancelled) and all(r == 0 for r in self.returncodes)

    def message(self) -> str:
        """One readable line: why it failed, with the tail of each failing stage's stderr."""
        parts: list[str] = []
        if self.timed_out:
            parts.append(f"timed out after {self.seconds:.0f} s and was aborted")
        if self.cancelled:
            parts.append("interrupted: the agent is stopping; retried next cycle")
        # The receiver's complaint usually says what is wrong, so it comes first.
        for index in reversed(range(len(self.returncodes))):
            code, tail = self.returncodes[index], _last_lines(self.stderr[index])
            if code not in (0, None) and not (code < 0 and (self.timed_out or self.cancelled)):
                parts.append(f"{self.labels[index]} exited {code}" + (f": {tail}" if tail else ""))
        return "; ".join(parts) or "ok"


def _last_lines(text: str, count: int = 3) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " / ".join(lines[-count:])


class _Tail:
    """Keeps the last few KiB of a stream, read on a thread so no pipe ever fills up."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        with stream:
            fd = stream.fileno()
            for chunk in iter(lambda: os.read(fd, 4096), b""):
                self._chunks.append(chunk)
                self._size += len(chunk)
                while self._size - len(self._chunks[0]) >= TAIL_BYTES:
                    self._size -= len(self._chunks.popleft())

    def text(self) -> str:
        self._thread.join(timeout=5)
        return b"".join(self._chunks)[-TAIL_BYTES:].decode("utf-8", "replace")


@dataclass
class _Relay:
    limit: int | None
    stop: threading.Event
    moved: int = 0
    broken: bool = False
    started: float = field(default_factory=time.monotonic)

    def run(self, source: IO[bytes], sink: IO[bytes]) -> None:
        src, dst = source.fileno(), sink.fileno()
        for fd in (src, dst):
            _grow_pipe(fd)
        copy = _splice if _SPLICE is not None else _read_write
        try:
            while not self.stop.is_set():
                moved = copy(src, dst)
                if not moved:
                    break
                self.moved += moved
                if self.limit:
                    self._throttle()
        except OSError:  # the receiver went away (EPIPE): the sender is stopped below
            self.broken = True
        finally:
            # Closing the receiver's stdin ends its stream; closing our read end makes a
            # sender that is still writing fail with EPIPE instead of blocking forever.
            sink.close()
            source.close()

    def _throttle(self) -> None:
        ahead = self.moved / float(self.limit or 1) - (time.monotonic() - self.started)
        if ahead > 0:
            self.stop.wait(ahead)


_SPLICE = getattr(os, "splice", None)  # Linux, Python 3.10+: pipe to pipe inside the kernel
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (named in Python 3.10+), Linux only


def _grow_pipe(fd: int) -> None:
    # A 1 MiB pipe instead of 64 KiB: fewer wake-ups of the three processes per MiB.
    try:
        import fcntl

        fcntl.fcntl(fd, _F_SETPIPE_SZ, CHUNK)
    except (OSError, ImportError):
        pass  # not Linux, or above /proc/sys/fs/pipe-max-size: the default size works too


def _splice(src: int, dst: int) -> int:
    """Move up to a chunk from pipe to pipe without copying it through Python."""
    moved = _SPLICE(src, dst, CHUNK)  # type: ignore[misc]
    return int(moved)


def _read_write(src: int, dst: int) -> int:
    data = os.read(src, CHUNK)
    view = memoryview(data)
    while view:
        view = view[os.write(dst, view):]
    return len(data)


def _popen(argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
    # A session of their own: a Ctrl-C on the agent's terminal reaches the agent only, and
    # the agent decides in which order its children stop.
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        list(argv), bufsize=0, start_new_session=True, env={**os.environ, **ENV}, **kwargs
    )


def run_pipeline(sender: Sequence[str], receiver: Sequence[str], options: Options) -> Result:
    started = time.monotonic()
    send = _popen(sender, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE)
    try:
        receive = _popen(receiver, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    except OSError:
        _stop(send, signal.SIGKILL)
        send.wait()
        raise
    tails = (_Tail(send.stderr), _Tail(receive.stdout))  # type: ignore[arg-type]
    relay = _Relay(options.bandwidth_limit, threading.Event())
    thread = threading.Thread(target=relay.run, args=(send.stdout, receive.stdin), daemon=True)
    thread.start()
    timed_out, cancelled = _supervise(thread, relay, (send, receive), options, started)
    if relay.broken and send.poll() is None:
        _stop(send, signal.SIGTERM)
    codes = _wait_all((send, receive))
    return Result(codes, relay.moved, time.monotonic() - started,
                  (tails[0].text(), tails[1].text()), options.labels, timed_out, cancelled)


def _supervise(
    thread: threading.Thread, relay: _Relay, procs: Sequence[subprocess.Popen[bytes]],
    options: Options, started: float,
) -> tuple[bool, bool]:
    """Wait for the relay; abort on timeout or cancel; call progress about once a second."""
    timed_out = cancelled = False
    while thread.is_alive():
        thread.join(0.25)
        elapsed = time.monotonic() - started
        if options.progress is not None:
            options.progress(relay.moved, elapsed)
        if timed_out or cancelled:
            continue
        if options.timeout is not None and elapsed > options.timeout:
            timed_out = True
        elif options.cancel is not None and options.cancel.is_set():
            cancelled = True
        if timed_out or cancelled:
            relay.stop.set()
            _stop(procs[0], signal.SIGTERM)  # sender first: the receiver sees the stream end
    return timed_out, cancelled


def _stop(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass


def _wait_all(procs: Sequence[subprocess.Popen[bytes]]) -> tuple[int | None, ...]:
    codes: list[int | None] = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=KILL_GRACE_SECONDS))
        except subprocess.TimeoutExpired:
            _stop(proc, signal.SIGKILL)
            codes.append(proc.wait())
    return tuple(codes)


def run_one(argv: Sequence[str], options: Options) -> Result:
    """One process (a rollback, a rename, a remote command) with the same timeout/cancel."""
    started = time.monotonic()
    proc = _popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                  stderr=subprocess.STDOUT)
    tail = _Tail(proc.stdout)  # type: ignore[arg-type]
    timed_out = cancelled = False
    while proc.poll() is None:
        try:
            proc.wait(timeout=0.25)
        except subprocess.TimeoutExpired:
            pass
        elapsed = time.monotonic() - started
        if options.timeout is not None and elapsed > options.timeout and not timed_out:
            timed_out = True
            _stop(proc, signal.SIGTERM)
    codes = _wait_all((proc,))
    return Result(codes, 0, time.monotonic() - started, (tail.text(),), options.labels[:1],
                  timed_out, cancelled)
