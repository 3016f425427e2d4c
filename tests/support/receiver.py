"""A local HTTP receiver on 127.0.0.1 standing in for Teams, Slack and webhook endpoints.

It records every request (method, path, headers, body) and answers as the real services do when
they accept a message: 200 with `{"ok": true, ...}` (what the Slack Web API answers; Teams Workflows
webhooks and plain webhooks only look at the status). `fail_with` makes every answer an error status.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """The requests received so far, and the base URL to send them to."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.fail_with: int | None = None
        self._received: list[Received] = []
        self._lock = threading.Lock()

    def record(self, request: Received) -> None:
        with self._lock:
            self._received.append(request)

    def received(self, path_prefix: str = "/") -> list[Received]:
        with self._lock:
            return [r for r in self._received if r.path.startswith(path_prefix)]


@contextlib.contextmanager
def receiver() -> Iterator[Receiver]:
    """A receiver listening on a free loopback port for as long as the context lasts."""
    box: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            box[0].record(Received("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            status = box[0].fail_with or 200
            answer = json.dumps({"ok": status == 200, "channel": "C1", "ts": "1.0"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.append(Receiver(f"http://127.0.0.1:{server.server_address[1]}"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield box[0]
    finally:
        server.shutdown()
        server.server_close()
