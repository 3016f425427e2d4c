"""A real dagster-webserver (GraphQL on loopback) and dagster-daemon over one test instance.

The webserver serves `/graphql` for the code location in `workspace.yaml`; the daemon dequeues the
runs it accepts and starts them, as in production (only the run launcher is local; see
tests/support/instance.py). Both listen on / use free loopback ports and a temporary DAGSTER_HOME.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(url: str, query: str, variables: Mapping[str, Any] | None = None, timeout: float = 30) -> Any:
    """POST a GraphQL request; returns the `data` member (raises on transport or GraphQL errors)."""
    body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"HTTP {exc.code} from {url}: {exc.read()[:2000]!r}") from None
    if answer.get("errors"):
        raise RuntimeError(f"GraphQL errors: {answer['errors']}")
    return answer["data"]


LOCATION_STATUS = """
query { workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


@dataclass
class DagsterServices:
    graphql_url: str
    home: Path
    log: Path


def _stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def dagster_services(
    home: Path, env: Mapping[str, str], startup_timeout: float = 120
) -> Iterator[DagsterServices]:
    """Start dagster-webserver and dagster-daemon on `home` (which holds dagster.yaml); stop both after.

    Yields once the code location is loaded and GraphQL answers, so a launch can be made at once.
    """
    port = free_port()
    run_env = {**env, "DAGSTER_HOME": str(home)}
    workspace = str(PROJECT_ROOT / "workspace.yaml")
    log = home / "services.log"
    with log.open("ab") as out, contextlib.ExitStack() as stack:
        webserver = subprocess.Popen(
            [str(BIN / "dagster-webserver"), "-w", workspace, "-h", "127.0.0.1", "-p", str(port)],
            cwd=PROJECT_ROOT, env=run_env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        stack.callback(_stop, webserver)
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", workspace],
            cwd=PROJECT_ROOT, env=run_env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        stack.callback(_stop, daemon)
        url = f"http://127.0.0.1:{port}/graphql"
        deadline = time.monotonic() + startup_timeout
        while True:
            if webserver.poll() is not None or daemon.poll() is not None:
                raise RuntimeError(f"dagster-webserver or dagster-daemon exited:\n{log.read_text()[-4000:]}")
            with contextlib.suppress(OSError, RuntimeError, ValueError):
                entries = graphql(url, LOCATION_STATUS, timeout=5)["workspaceOrError"]["locationEntries"]
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
                    if errors:
                        raise AssertionError(f"code location failed to load: {errors}")
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"dagster-webserver not ready after {startup_timeout:.0f} s:\n{log.read_text()[-4000:]}"
                )
            time.sleep(0.25)
        yield DagsterServices(graphql_url=url, home=home, log=log)
