"""agent/pipeline.py: the relay between sender and receiver (no shell)."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from zfs_sync.agent.pipeline import Options, run_one, run_pipeline

PY = sys.executable
SEND_4MB = [PY, "-c", "import sys; sys.stdout.buffer.write(b'z' * (4 << 20))"]
COUNT = [PY, "-c", "import sys; print(len(sys.stdin.buffer.read()))"]


def test_bytes_are_relayed_and_counted() -> None:
    seen: list[int] = []
    result = run_pipeline(SEND_4MB, COUNT, Options(progress=lambda b, s: seen.append(b)))
    assert result.ok and result.bytes == 4 << 20
    assert result.stderr[1].strip() == str(4 << 20)  # the receiver got every byte
    assert seen and seen[-1] == 4 << 20


def test_receiver_failure_stops_the_sender_and_explains() -> None:
    endless = [PY, "-c", "import sys\nwhile True: sys.stdout.buffer.write(b'x' * 65536)"]
    refuse = [PY, "-c", ("import sys; sys.stderr.write('cannot receive: destination has been "
                         "modified\\n'); sys.exit(1)")]
    started = time.monotonic()
    result = run_pipeline(endless, refuse, Options(labels=("ssh", "zfs receive")))
    assert time.monotonic() - started < 20
    assert not result.ok
    assert result.message().startswith("zfs receive exited 1: cannot receive: destination")


def test_sender_failure_is_reported_with_its_stderr() -> None:
    ssh_fails = [PY, "-c", ("import sys; sys.stderr.write('ssh: connect to host 127.0.0.1 "
                            "port 1: Connection refused\\n'); sys.exit(255)")]
    result = run_pipeline(ssh_fails, COUNT, Options(labels=("ssh", "zfs receive")))
    assert not result.ok
    assert "ssh exited 255: ssh: connect to host 127.0.0.1 port 1: Connection refused" in (
        result.message())


def test_timeout_aborts_sender_first() -> None:
    slow = [PY, "-c", ("import time, sys\nwhile True:\n sys.stdout.buffer.write(b'x'); "
                       "sys.stdout.flush(); time.sleep(0.05)")]
    result = run_pipeline(slow, COUNT, Options(timeout=1.0))
    assert result.timed_out and not result.ok
    assert "timed out" in result.message()
    assert result.returncodes[0] is not None and result.returncodes[0] < 0  # SIGTERM


def test_cancel_interrupts_a_running_transfer() -> None:
    stop = threading.Event()
    slow = [PY, "-c", ("import time, sys\nwhile True:\n sys.stdout.buffer.write(b'x' * 1024); "
                       "sys.stdout.flush(); time.sleep(0.01)")]
    threading.Timer(0.5, stop.set).start()
    result = run_pipeline(slow, COUNT, Options(cancel=stop))
    assert result.cancelled and "interrupted" in result.message()


def test_bandwidth_limit_slows_the_relay() -> None:
    started = time.monotonic()
    result = run_pipeline(SEND_4MB, COUNT, Options(bandwidth_limit=8 << 20))
    assert result.ok
    assert time.monotonic() - started >= 0.4  # 4 MiB at 8 MiB/s


def test_missing_program_raises_oserror_and_leaves_nothing_running() -> None:
    try:
        run_pipeline(SEND_4MB, ["/nonexistent/zfs", "receive"], Options())
    except OSError:
        pass
    else:
        raise AssertionError("expected OSError")


def test_run_one_reports_output_and_code() -> None:
    result = run_one([PY, "-c", "print('hello'); raise SystemExit(3)"], Options(labels=("x", "")))
    assert result.returncodes == (3,) and result.message() == "x exited 3: hello"


def test_read_write_relay_where_splice_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.9 (and non-Linux) has no os.splice: the plain read/write relay is used."""
    from zfs_sync.agent import pipeline

    monkeypatch.setattr(pipeline, "_SPLICE", None)
    result = run_pipeline(SEND_4MB, COUNT, Options())
    assert result.ok and result.bytes == 4 << 20 and result.stderr[1].strip() == str(4 << 20)
