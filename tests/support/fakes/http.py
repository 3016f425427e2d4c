"""A small threaded HTTP server for contract fakes: routes, bearer tokens per audience, request log, faults.

Tokens: `FakeCredential` hands out a signed JWT whose `aud` is the resource of the scope it was asked
for (`https://ml.azure.com/.default` -> `https://ml.azure.com`), as Entra ID does. Every route declares
the audience it requires (`ARM`, `AZUREML`, `BATCH`, or None for a route that takes no token, such as a
SAS-signed URL); a token for another audience, unsigned, expired or missing gets the 401 Entra ID-fronted
services answer (`WWW-Authenticate: Bearer ... error="invalid_token"`), so a client that asks for the
wrong scope fails here as it would on Azure.

Faults are scheduled per route and consumed one per call:
  "429"     answer 429 Too Many Requests with Retry-After (before doing anything)
  "500", "503"  answer that status (before doing anything)
  "reset"   close the connection without an answer (before doing anything)
  "timeout" DO the work, then answer only after the client has given up (a lost response)
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
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

from azure.core.credentials import AccessToken, AccessTokenInfo

FAULTS = ("429", "500", "503", "reset", "timeout")
TENANT = "00000000-0000-0000-0000-0000000000aa"
# Signs the fake tokens, so a fake accepts only tokens its FakeCredential handed out.
_SIGNING_KEY = hashlib.sha256(b"contract fakes token signing key").digest()


@dataclass(frozen=True)
class Audience:
    """A service's token audience: the `aud` values it accepts (Entra ID issues the resource with or
    without its trailing slash, depending on how the scope was written)."""

    service: str
    accepted: tuple[str, ...]

    def accepts(self, aud: str) -> bool:
        return aud.rstrip("/") in {a.rstrip("/") for a in self.accepted}


# Azure Resource Manager: its own error lists these four forms. azureml-core asks for the first (the AAD
# resource id of the cloud), azure-ai-ml's MLClient for `https://management.azure.com/.default`.
ARM = Audience(
    "Azure Resource Manager",
    (
        "https://management.core.windows.net/",
        "https://management.core.windows.net",
        "https://management.azure.com/",
        "https://management.azure.com",
    ),
)
# AzureML's own audience: batch endpoint scoring URIs (azure-ai-ml asks for `https://ml.azure.com//.default`).
AZUREML = Audience("Azure Machine Learning", ("https://ml.azure.com/", "https://ml.azure.com"))
# AzureML run history: azureml-core calls it with an ARM token, azure-ai-ml's runhistory client with an
# AzureML token; the service takes both.
AZUREML_OR_ARM = Audience("Azure Machine Learning (data plane)", AZUREML.accepted + ARM.accepted)
# Azure Batch (the spec's OAuth2 scope and azure-batch's default: `https://batch.core.windows.net//.default`).
BATCH = Audience("Azure Batch", ("https://batch.core.windows.net/", "https://batch.core.windows.net"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def resource_of(scope: str) -> str:
    """The resource (token audience) a `.default` scope asks for, as Entra ID reads it."""
    if not scope.endswith("/.default"):
        raise ValueError(f"not a .default scope: {scope!r}")
    return scope[: -len("/.default")]


def token_for(audience: str, *, lifetime: int = 3600) -> str:
    """A signed JWT for `audience` (a resource, e.g. `https://management.core.windows.net/`)."""
    now = int(time.time())
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {
        "aud": audience,
        "iss": f"https://sts.windows.net/{TENANT}/",
        "tid": TENANT,
        "oid": "00000000-0000-0000-0000-0000000000bb",
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
    }
    payload = _b64(json.dumps(claims).encode())
    signature = hmac.new(_SIGNING_KEY, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def token_audience(token: str) -> str:
    """The audience of a token FakeCredential issued; ValueError for a forged, malformed or expired one."""
    try:
        header, payload, signature = token.split(".")
        expected = hmac.new(_SIGNING_KEY, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(_unb64(signature), expected):
            raise ValueError("signature")
        claims = json.loads(_unb64(payload))
    except ValueError as err:
        raise ValueError("the token is malformed or its signature is invalid") from err
    if int(claims.get("exp", 0)) <= time.time():
        raise ValueError("the token is expired")
    return str(claims["aud"])


def check_bearer(authorization: str | None, audience: Audience) -> str | None:
    """Why `authorization` does not carry a token for `audience` (None: it does)."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme != "Bearer" or not token:
        return "the request has no bearer token"
    try:
        aud = token_audience(token)
    except ValueError as err:
        return str(err)
    if not audience.accepts(aud):
        allowed = ",".join(f"'{a}'" for a in audience.accepted)
        return (
            f"The access token has been obtained for wrong audience or resource '{aud}'. It should exactly "
            f"match with one of the allowed audiences {allowed}."
        )
    return None


def sent_audience(authorization: str | None) -> str:
    """The audience of the bearer token in `authorization`, "" when there is no valid one."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme != "Bearer":
        return ""
    try:
        return token_audience(token)
    except ValueError:
        return ""


def www_authenticate(reason: str) -> dict[str, str]:
    """The header Entra ID-fronted services send with a 401."""
    return {
        "WWW-Authenticate": f'Bearer authorization_uri="https://login.microsoftonline.com/{TENANT}", '
        f'error="invalid_token", error_description="{reason}"'
    }


class FakeCredential:
    """An Entra ID credential for the fakes: a token per scope, its audience the scope's resource.

    `requested` records every scope asked for (what the audience tests compare). Like Entra ID, one
    request is for one resource.
    """

    def __init__(self) -> None:
        self.requested: list[str] = []

    def _issue(self, scopes: tuple[str, ...]) -> tuple[str, int]:
        if len(scopes) != 1:
            raise ValueError(f"a token request names exactly one scope, got {scopes!r}")
        self.requested.append(scopes[0])
        return token_for(resource_of(scopes[0])), int(time.time()) + 3600

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(*self._issue(scopes))

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo(*self._issue(scopes))


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
    audience: str = ""  # the audience of the bearer token sent, "" without a valid one


Handler = Callable[[Request], Reply]


class FakeHttpServer:
    """Routes are (method, path regex, name, handler, the audience its token must have or None)."""

    def __init__(self, slow_seconds: float = 1.5, retry_after: str = "0.2") -> None:
        self.routes: list[tuple[str, re.Pattern[str], str, Handler, Audience | None]] = []
        self.faults: dict[str, list[str]] = {}
        self.calls: list[Call] = []
        self.lock = threading.RLock()
        self.slow_seconds = slow_seconds
        self.retry_after = retry_after
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- configuration -------------------------------------------------------------------------
    def route(
        self, method: str, pattern: str, name: str, handler: Handler, *, audience: Audience | None
    ) -> None:
        """Serve `method pattern` as `name`; `audience`: whose token the route requires (None: no token,
        e.g. a SAS-signed URL)."""
        self.routes.append((method, re.compile(pattern + r"$", re.IGNORECASE), name, handler, audience))

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
        aud = sent_audience(h.headers.get("Authorization"))
        found = next(((r, m) for r in self.routes if r[0] == method and (m := r[1].match(parts.path))), None)
        if found is None:
            self._log(method, parts.path, "?", 404, None, body, aud)
            self._send(
                h, Reply(404, {"error": {"code": "NotFound", "message": f"no route {method} {parts.path}"}})
            )
            return
        (_, _, name, handler, audience), match = found
        with self.lock:
            queue = self.faults.get(name) or []
            fault = queue.pop(0) if queue else None
        if fault in ("429", "500", "503"):
            self._log(method, parts.path, name, int(fault), fault, body, aud)
            headers = {"Retry-After": self.retry_after} if fault == "429" else {}
            self._send(
                h, Reply(int(fault), {"error": {"code": "Fault", "message": f"injected {fault}"}}, headers)
            )
            return
        if fault == "reset":
            self._log(method, parts.path, name, None, fault, body, aud)
            _reset(h)
            return
        refused = check_bearer(h.headers.get("Authorization"), audience) if audience else None
        if refused is not None:
            self._log(method, parts.path, name, 401, None, body, aud)
            code = (
                "InvalidAuthenticationTokenAudience"
                if "audience" in refused
                else "InvalidAuthenticationToken"
            )
            error = {"error": {"code": code, "message": refused}}
            self._send(h, Reply(401, error, www_authenticate(refused)))
            return
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        request = Request(
            method, parts.path, query, {k.lower(): v for k, v in h.headers.items()}, body, match
        )
        try:
            reply = handler(request)
        except Exception as err:  # a bug in the fake: show it to the client
            reply = Reply(500, {"error": {"code": "FakeBug", "message": repr(err)}})
        self._log(method, parts.path, name, reply.status, fault, body, aud)
        if fault == "timeout":
            time.sleep(self.slow_seconds)
        with contextlib.suppress(OSError):
            self._send(h, reply)

    def _log(
        self,
        method: str,
        path: str,
        route: str,
        status: int | None,
        fault: str | None,
        body: Any,
        audience: str,
    ) -> None:
        with self.lock:
            self.calls.append(Call(method, path, route, status, fault, body, time.monotonic(), audience))

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
