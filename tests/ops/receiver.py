"""A webhook receiver: a local HTTP server on 127.0.0.1 that answers with scripted codes.

``delay`` makes every answer slow (a receiver that takes its time), so that a delivery spans
several monitor ticks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    url: str
    codes: list[int] = field(default_factory=list)  # answers in order, then 200
    calls: list[Received] = field(default_factory=list)

    @property
    def delivered(self) -> list[Received]:
        return [c for c in self.calls if 200 <= c.status < 300]


@contextmanager
def webhook_receiver(codes: list[int] | None = None, delay: float = 0.0) -> Iterator[Receiver]:
    receiver = Receiver(url="", codes=list(codes or []))
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                code = receiver.codes.pop(0) if receiver.codes else 200
                receiver.calls.append(Received(dict(self.headers), body, code))
            time.sleep(delay)
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
