"""The image's HEALTHCHECK: find which role PID 1 runs (deploy/image/entrypoint.sh execs it) and ask it.

webserver: GET /server_info; gateway: GET /healthz; code server: `dagster api grpc-health-check`;
daemon: `dagster-daemon liveness-check` (its heartbeat in the instance's storage). Anything else (a run
worker, a one-off command) is healthy while it runs. Exit 0 healthy, 1 not. Standard library only."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path


def _option(argv: list[str], names: tuple[str, ...], default: str) -> str:
    for i, arg in enumerate(argv[:-1]):
        if arg in names:
            return argv[i + 1]
    return default


def check_for(argv: list[str], env: dict[str, str]) -> list[str] | str | None:
    """What to check for a process started as `argv`: a URL to GET, a command to run, or None."""
    joined = " ".join(argv)
    if "dagster-webserver" in joined:
        port = _option(argv, ("-p", "--port"), "3000")
        return f"http://127.0.0.1:{port}/server_info"
    if "adf_bridge.gateway" in joined:
        return f"http://127.0.0.1:{env.get('MNIST_GATEWAY_PORT', '8080')}/healthz"
    if "dagster-daemon" in joined:
        return ["dagster-daemon", "liveness-check"]
    if "code-server" in argv or ("api" in argv and "grpc" in argv):
        port = _option(argv, ("-p", "--port"), "3030")
        return ["dagster", "api", "grpc-health-check", "-p", port]
    return None


def main() -> int:
    argv = Path("/proc/1/cmdline").read_bytes().decode().split("\0")
    check = check_for([a for a in argv if a], dict(os.environ))
    try:
        if isinstance(check, str):
            with urllib.request.urlopen(check, timeout=5) as response:  # loopback only
                return 0 if response.status == 200 else 1
        if isinstance(check, list):
            return subprocess.run(check, capture_output=True, timeout=8, check=False).returncode
    except (OSError, subprocess.SubprocessError) as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
