"""For the gateway's tests and benchmark: a local stand-in for Entra ID's signing keys, and a real
dagster-webserver (optionally with a daemon) over a temporary instance.

`LocalEntra` generates an RSA key, serves its JWKS over HTTP on a free loopback port (as
`https://login.microsoftonline.com/<tenant>/discovery/v2.0/keys` does) and signs tokens shaped like the
access tokens Entra gives a managed identity (v1: `iss` sts.windows.net, `appid`, `oid`, `idtyp: app`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.support.azurite import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
AUDIENCE = "api://dagster-gateway"
ADF_OID = "3f5c2b1e-8d4a-4e7b-9c6d-1a2b3c4d5e6f"  # the factory's managed identity (object id)
ADF_APPID = "b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e"  # its client (application) id
OTHER_OID = "99999999-8d4a-4e7b-9c6d-1a2b3c4d5e6f"
# The launch and status documents a client (ADF's Web activities) sends to the gateway's /graphql.
LAUNCH = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on RunConfigValidationInvalid { errors { message reason } }
    ... on PipelineNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on PythonError { message }
  }
}
"""
STATUS = """
query RunStatus($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status startTime endTime }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}
"""


class LocalEntra:
    """A tenant's signing keys served on 127.0.0.1, and tokens signed with them."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "local-" + uuid.uuid4().hex[:8]
        self.extra_keys: list[dict[str, Any]] = []
        self.requests = 0
        entra = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                entra.requests += 1
                body = json.dumps(entra.jwks()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.jwks_url = f"http://127.0.0.1:{self.server.server_address[1]}/{TENANT}/discovery/v2.0/keys"

    def jwks(self) -> dict[str, Any]:
        public = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        public.update(kid=self.kid, use="sig", kty="RSA")
        return {"keys": [public, *self.extra_keys]}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": AUDIENCE,
            "iss": f"https://sts.windows.net/{TENANT}/",
            "iat": now - 5,
            "nbf": now - 5,
            "exp": now + 3600,
            "aio": "E2RgYJg...",
            "appid": ADF_APPID,
            "appidacr": "2",
            "idp": f"https://sts.windows.net/{TENANT}/",
            "idtyp": "app",
            "oid": ADF_OID,
            "sub": ADF_OID,
            "tid": TENANT,
            "uti": uuid.uuid4().hex[:22],
            "ver": "1.0",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, key: Any = None, headers: Mapping[str, Any] | None = None, **overrides: Any) -> str:
        """A token as Entra would issue it; `None` in `overrides` drops a claim."""
        return jwt.encode(
            self.claims(**overrides),
            key or self.key,
            algorithm="RS256",
            headers={"kid": self.kid, "x5t": self.kid, **(headers or {})},
        )

    def settings_env(self) -> dict[str, str]:
        """Gateway settings for this tenant: the ADF identity may launch train_model and score_batch."""
        identities = [{"name": "adf-factory", "object_id": ADF_OID, "jobs": ["train_model", "score_batch"]}]
        return {
            "MNIST_GATEWAY_TENANT_ID": TENANT,
            "MNIST_GATEWAY_AUDIENCE": AUDIENCE,
            "MNIST_GATEWAY_JWKS_URL": self.jwks_url,
            "MNIST_GATEWAY_IDENTITIES": json.dumps(identities),
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "MNIST_", "DAGSTER_"))}
    env.update(extra)
    return env


class Dagster:
    """A real dagster-webserver (and, on request, a dagster-daemon) over a temporary DAGSTER_HOME with the
    shipped local instance settings. The webserver listens on 127.0.0.1 only: it is the internal side."""

    def __init__(self, home: Path, env: Mapping[str, str], instance_yaml: Path | None = None) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        shutil.copy(
            instance_yaml or PROJECT_ROOT / "instance" / "local" / "dagster.yaml", home / "dagster.yaml"
        )
        self.env = {**env, "DAGSTER_HOME": str(home)}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/graphql"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def _start(self, name: str, args: list[str]) -> None:
        with (self.home / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                args,
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start_webserver(self, timeout: float = 120) -> None:
        workspace = str(PROJECT_ROOT / "workspace.yaml")
        self._start(
            "webserver",
            [str(BIN / "dagster-webserver"), "-w", workspace, "-h", "127.0.0.1", "-p", str(self.port)],
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs["webserver"].poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/server_info", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        log = (self.home / "webserver.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"dagster-webserver did not come up on port {self.port}:\n{log}")

    def start_daemon(self) -> None:
        self._start(
            "daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(PROJECT_ROOT / "workspace.yaml")]
        )

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.procs.clear()

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Ask the webserver directly (the internal side, no gateway): how tests see the truth."""
        request = urllib.request.Request(
            self.url,
            data=json.dumps({"query": query, "variables": dict(variables or {})}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def runs(self) -> list[dict[str, Any]]:
        """Every run in the instance: id, job, status and tags."""
        answer = self.graphql(
            "{ runsOrError { ... on Runs { results { runId jobName status tags { key value } } } } }"
        )
        return answer["data"]["runsOrError"]["results"]


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the gateway did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
