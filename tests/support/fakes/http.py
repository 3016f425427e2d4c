"""A small threaded HTTP server for contract fakes: routes, bearer-token check, request log, faults.

Faults are scheduled per route and consumed one per call:
  "429"     answer 429 Too Many Requests with Retry-After (before doing anything)
  "500", "503"  answer that status (before doing anything)
  "reset"   close the connection without an answer (before doing anything)
  "timeout" DO the work, then answer only after the client has given up (a lost response)
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from azure.core.credentials import AccessToken

TOKEN = "fake-token-for-tests"
FAULTS = ("429", "500", "503", "reset", "timeout")


class FakeCredential:
    """Hands out the token the fakes accept (any object with get_token works for azure-core)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(TOKEN, int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        from azure.core.credentials import AccessTokenInfo

        return AccessTokenInfo(TOKEN, int(time.time()) + 3600)


def fake_credential() -> FakeCredential:
    """Factory named by backends' `credential="python:tests.support.fakes.http:fake_credential"`."""
    return FakeCredential()


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    match: re.Match[str]


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None


@dataclass
class Call:
    method: str
    path: str
    route: str
    status: int | None
    fault: str | None
    body: Any
    at: float


Handler = Callable[[Request], Reply]


class FakeHttpServer:
    """Routes are (method, path regex, name, handler, needs_auth)."""

    def __init__(self, slow_seconds: float = 1.5, retry_after: str = "0.2") -> None:
        self.routes: list[tuple[str, re.Pattern[str], str, Handler, bool]] = []
        self.faults: dict[str, list[str]] = {}
        self.calls: list[Call] = []
        self.lock = threading.RLock()
        self.slow_seconds = slow_seconds
        self.retry_after = retry_after
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- configuration -------------------------------------------------------------------------
    def route(self, method: str, pattern: str, name: str, handler: Handler, auth: bool = True) -> None:
        self.routes.append((method, re.compile(pattern + r"$", re.IGNORECASE), name, handler, auth))

    def inject(self, route: str, *faults: str) -> None:
        for fault in faults:
            assert fault in FAULTS, fault
        with self.lock:
            self.faults.setdefault(route, []).extend(faults)

    def calls_to(self, route: str, ok_only: bool = False) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.route == route and (not ok_only or (c.status or 0) < 400)]

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # ---- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> FakeHttpServer:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _handle(self) -> None:
                fake._dispatch(self)

            def finish(self) -> None:  # a reset connection cannot be flushed
                with contextlib.suppress(OSError, ValueError):
                    super().finish()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        self._server = _QuietServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @contextlib.contextmanager
    def running(self) -> Iterator[FakeHttpServer]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    # ---- dispatch ------------------------------------------------------------------------------------
    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        method = h.command
        found = next(((r, m) for r in self.routes if r[0] == method and (m := r[1].match(parts.path))), None)
        if found is None:
            self._log(method, parts.path, "?", 404, None, body)
            self._send(
                h, Reply(404, {"error": {"code": "NotFound", "message": f"no route {method} {parts.path}"}})
            )
            return
        (_, _, name, handler, auth), match = found
        with self.lock:
            queue = self.faults.get(name) or []
            fault = queue.pop(0) if queue else None
        if fault in ("429", "500", "503"):
            self._log(method, parts.path, name, int(fault), fault, body)
            headers = {"Retry-After": self.retry_after} if fault == "429" else {}
            self._send(
                h, Reply(int(fault), {"error": {"code": "Fault", "message": f"injected {fault}"}}, headers)
            )
            return
        if fault == "reset":
            self._log(method, parts.path, name, None, fault, body)
            _reset(h)
            return
        if auth and h.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._log(method, parts.path, name, 401, None, body)
            self._send(
                h, Reply(401, {"error": {"code": "Unauthorized", "message": "missing or bad bearer token"}})
            )
            return
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        request = Request(
            method, parts.path, query, {k.lower(): v for k, v in h.headers.items()}, body, match
        )
        try:
            reply = handler(request)
        except Exception as err:  # a bug in the fake: show it to the client
            reply = Reply(500, {"error": {"code": "FakeBug", "message": repr(err)}})
        self._log(method, parts.path, name, reply.status, fault, body)
        if fault == "timeout":
            time.sleep(self.slow_seconds)
        with contextlib.suppress(OSError):
            self._send(h, reply)

    def _log(
        self, method: str, path: str, route: str, status: int | None, fault: str | None, body: Any
    ) -> None:
        with self.lock:
            self.calls.append(Call(method, path, route, status, fault, body, time.monotonic()))

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, reply: Reply) -> None:
        payload = (
            reply.raw
            if reply.raw is not None
            else (b"" if reply.body is None else json.dumps(reply.body).encode())
        )
        h.send_response(reply.status)
        h.send_header("Content-Type", "application/json" if reply.raw is None else "application/octet-stream")
        h.send_header("Content-Length", str(len(payload)))
        for k, v in reply.headers.items():
            h.send_header(k, v)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(payload)
        h.wfile.flush()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:  # resets and client timeouts
        return


def _reset(h: BaseHTTPRequestHandler) -> None:
    """Close with RST (SO_LINGER 0): the client sees 'connection reset by peer'."""
    sock: socket.socket = h.connection  # type: ignore[assignment]
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    h.close_connection = True
