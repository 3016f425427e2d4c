"""The gateway on its own: it starts and serves with none of the code location's `MNIST_*` settings, and with
an invalid one present, because it reads only `MNIST_GATEWAY_*` and the jobs manifest (adf/jobs.json) and
never imports the code location (`orchestration`) or Dagster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from tests.support.azurite import free_port
from tests.support.gateway import LAUNCH, PROJECT_ROOT, STATUS, clean_env

SECRET = "t" * 40
ADD_PARTITION = """mutation AddPartition($repositorySelector: RepositorySelector!, $partitionsDefName: String!,
  $partitionKey: String!) {
  addDynamicPartition(repositorySelector: $repositorySelector, partitionsDefName: $partitionsDefName,
    partitionKey: $partitionKey) { __typename }
}"""
# Not a valid code-location setting: loading the code location with it fails (checked below).
BROKEN_CODE_LOCATION = {"MNIST_STORAGE": "bogus"}


def gateway_env(upstream: str, port: int = 8080) -> dict[str, str]:
    """The process environment of a local gateway: static token for score_batch, no code-location settings
    but a broken one."""
    return clean_env(
        MNIST_GATEWAY_AUTH="static",
        MNIST_GATEWAY_STATIC_TOKEN=SECRET,
        MNIST_GATEWAY_STATIC_JOBS="score_batch",
        MNIST_GATEWAY_UPSTREAM=upstream,
        MNIST_GATEWAY_PORT=str(port),
        PYTHONPATH=str(PROJECT_ROOT),
        **BROKEN_CODE_LOCATION,
    )


def partition_body(definition: str = "inference_batches") -> dict[str, Any]:
    return {
        "query": ADD_PARTITION,
        "variables": {
            "repositorySelector": {"repositoryLocationName": "mnist", "repositoryName": "__repository__"},
            "partitionsDefName": definition,
            "partitionKey": "batch-1",
        },
    }


def launch_body(job: str) -> dict[str, Any]:
    selector = {"repositoryLocationName": "mnist", "repositoryName": "__repository__", "jobName": job}
    return {"query": LAUNCH, "variables": {"executionParams": {"selector": selector}}}


class _Upstream(ThreadingHTTPServer):
    """A stand-in for dagster-webserver: answers every GraphQL request with `{"data": {"seen": <query>}}`."""

    seen: list[dict[str, Any]]


class _UpstreamHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        server = cast(_Upstream, self.server)
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server.seen.append(request)
        payload = json.dumps({"data": {"seen": request["query"].split("(")[0].strip()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[_Upstream]:
    server = _Upstream(("127.0.0.1", 0), _UpstreamHandler)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_the_premise_the_code_location_refuses_its_broken_setting() -> None:
    from orchestration.settings import Settings

    with pytest.raises(ValueError, match="MNIST_STORAGE"):
        Settings.from_env(BROKEN_CODE_LOCATION)


def test_gateway_starts_and_serves_without_the_code_locations_settings(
    upstream: _Upstream, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = gateway_env(f"http://127.0.0.1:{upstream.server_address[1]}/graphql", port)
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "adf_bridge.gateway"], cwd=tmp_path, env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"the gateway exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"the gateway did not start:\n{log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as answer:
                    assert json.loads(answer.read()) == {"status": "ok"}
                    break
            except OSError:
                time.sleep(0.2)
        headers = {"Authorization": f"Bearer {SECRET}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            run_id = str(uuid.uuid4())
            status = client.post("/graphql", json={"query": STATUS, "variables": {"runId": run_id}})
            assert status.status_code == 200 and status.json() == {"data": {"seen": "query RunStatus"}}
            # score_batch's partitions, known from the jobs manifest (the cwd is elsewhere: the default
            # manifest is found beside the project, not the working directory).
            assert client.post("/graphql", json=partition_body()).status_code == 200
            assert client.post("/graphql", json=partition_body("other")).status_code == 403
            assert client.post("/graphql", json=launch_body("train_model")).status_code == 403
        assert [request["variables"] for request in upstream.seen] == [
            {"runId": run_id},
            partition_body()["variables"],
        ]
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    assert SECRET not in log.read_text()


def test_gateway_never_imports_the_code_location_or_dagster() -> None:
    """Build the app from the environment as `python -m adf_bridge.gateway` does, serve requests through
    it, and list what got imported."""
    script = textwrap.dedent(
        """
        import json, sys
        import httpx
        from adf_bridge.gateway.app import create_app
        from adf_bridge.gateway.settings import GatewaySettings
        from tests.support.gateway import serve

        request = json.loads(sys.argv[1])
        answer = {"data": {"addDynamicPartition": {"__typename": "AddDynamicPartitionSuccess"}}}
        upstream = httpx.MockTransport(lambda _: httpx.Response(200, json=answer))
        app = create_app(GatewaySettings.from_env(), transport=upstream)
        with serve(app) as url, httpx.Client(base_url=url) as client:
            assert client.get("/healthz").status_code == 200
            headers = {"Authorization": "Bearer " + sys.argv[2]}
            response = client.post("/graphql", json=request, headers=headers)
            assert response.json() == answer, response.text
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("orchestration", "dagster"))))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(partition_body()), SECRET],
        env=gateway_env("http://upstream.invalid/graphql"), cwd=PROJECT_ROOT, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == []
