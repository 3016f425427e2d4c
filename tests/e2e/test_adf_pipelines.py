"""The generated ADF pipeline templates, executed by the ADF interpreter against a real
dagster-webserver + dagster-daemon on loopback, on the production instance settings (PostgreSQL when
127.0.0.1:5432 answers, else SQLite; see tests/support/instance.py), THROUGH the authenticating gateway
(adf_bridge/gateway, Entra mode): the interpreter's managed identity hands out RS256 tokens
signed by the local JWKS stand-in (tests/support/gateway.py), and the gateway checks every request
against its policy before the webserver sees it, as in production.

Scenarios through the gateway: success (train_model with a run config and tags), invalid run config
(HTTP 200 with RunConfigValidationInvalid), run failure (score_batch on a batch that is not
MNIST-shaped: adds the partition, reads the failure events), a retried launch (the first answer is
lost between gateway and ADF, ADF retries, one Dagster run: the run coordinator's idempotency), and a
job the identity may not launch (the gateway's 403 fails the pipeline). Straight to the webserver:
unknown job (Dagster's own PipelineNotFoundError; through the gateway it is a 403 like any job not
allowlisted) and concurrent duplicate launches. Time is scaled: a poll interval of 10 s takes 0.2 s, a
retry interval of 30 s 0.6 s.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import pytest

from adf_bridge.gateway.app import create_app
from adf_bridge.gateway.settings import GatewaySettings
from adf_bridge.templates.output import OUTPUT_DIR
from adf_bridge.templates.queries import ADD_PARTITION_QUERY, LAUNCH_QUERY
from tests.support.adf_interpreter import Interpreter, PipelineRun
from tests.support.gateway import AUDIENCE, LocalEntra, serve
from tests.support.instance import instance_yaml
from tests.support.synthetic import make_digits, write_source
from tests.support.webserver import dagster_services, graphql
from workload.mnist_idx import encode_idx

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SMALL_MODEL = {"ops": {"mnist_model": {"config": {"pca_components": 10, "kernel_components": 50}}}}
RUNS_BY_KEY = """query Runs($key: String!) {
  runsOrError(filter: {tags: [{key: "adf/pipeline_run_id", value: $key}]}) {
    ... on Runs { results { runId jobName status runConfigYaml tags { key value } } }
  }
}"""


def template(job: str) -> dict[str, Any]:
    return json.loads((OUTPUT_DIR / "pipelines" / f"{job}.json").read_text())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Webserver + daemon over a fresh instance and local storage with synthetic MNIST as the source, and
    the gateway in front of them (the ADF identity may launch train_model and score_batch).

    `url` is the webserver itself (how the tests see the truth), `gateway` what ADF calls."""
    tmp = tmp_path_factory.mktemp("adf")
    write_source(tmp / "source", n_train=300, n_test=100)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "MNIST_", "DAGSTER_"))}
    env.update(
        MNIST_SOURCE=str(tmp / "source"),
        MNIST_DATA_DIR=str(tmp / "storage"),
        MNIST_WORK_DIR=str(tmp / "compute"),
        MNIST_MIN_ACCURACY="0.8",
    )
    entra = LocalEntra()
    with (
        instance_yaml(tmp / "home") as instance,
        dagster_services(tmp / "home", env) as services,
        serve(
            create_app(
                GatewaySettings.from_env(
                    {**entra.settings_env(), "MNIST_GATEWAY_UPSTREAM": services.graphql_url}
                )
            )
        ) as gateway,
    ):
        yield {
            "url": services.graphql_url,
            "gateway": f"{gateway}/graphql",
            "entra": entra,
            "storage": tmp / "storage",
            "instance": instance,
            "log": services.log,
        }
        # Leave no run behind when the services stop.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and any(
            r["status"] in ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")
            for r in graphql(services.graphql_url, "{ runsOrError { ... on Runs { results { status } } } }")[
                "runsOrError"
            ]["results"]
        ):
            time.sleep(0.5)
    entra.close()


class ManagedIdentity:
    """The factory's managed identity: an Entra-shaped RS256 token for the audience asked for (as IMDS
    would give it), signed by the local tenant the gateway trusts. Remembers audiences and tokens."""

    def __init__(self, entra: LocalEntra) -> None:
        self.entra = entra
        self.audiences: list[str] = []
        self.tokens: set[str] = set()

    def __call__(self, resource: str) -> str:
        self.audiences.append(resource)
        token = self.entra.token(aud=resource)
        self.tokens.add(token)
        return token


def interpreter(site: dict[str, Any], identity: ManagedIdentity | None = None) -> Interpreter:
    return Interpreter(token_provider=identity or ManagedIdentity(site["entra"]), time_scale=0.02)


def params(url: str, **extra: Any) -> dict[str, Any]:
    return {"dagster_graphql_url": url, "audience": AUDIENCE, "poll_interval": 10, **extra}


def runs_for(url: str, adf_run_id: str) -> list[dict[str, Any]]:
    return graphql(url, RUNS_BY_KEY, {"key": adf_run_id})["runsOrError"]["results"]


def explain(run: PipelineRun) -> str:
    return f"{run.status}: {run.error}\n" + "\n".join(
        f"  {a.name}: {a.status} x{a.attempts} {a.error or ''}" for a in run.activity_runs
    )


Trained = tuple[PipelineRun, Interpreter, ManagedIdentity]


@pytest.fixture(scope="module")
def trained(site: dict[str, Any]) -> Trained:
    """The success scenario: ADF runs the train_model template with a run config and its own tags."""
    identity = ManagedIdentity(site["entra"])
    adf = interpreter(site, identity)
    run = adf.run(
        template("train_model"),
        params(site["gateway"], run_config=SMALL_MODEL, tags=[{"key": "team", "value": "ml"}]),
    )
    return run, adf, identity


def test_success_launches_one_run_with_config_and_tags_and_waits_for_it(
    site: dict[str, Any], trained: Trained
) -> None:
    run, adf, identity = trained
    assert run.status == "Succeeded", explain(run)
    [dagster_run] = runs_for(site["url"], run.run_id)
    assert dagster_run["runId"] == run.variables["run_id"]
    assert dagster_run["jobName"] == "train_model" and dagster_run["status"] == "SUCCESS"
    tags = {t["key"]: t["value"] for t in dagster_run["tags"]}
    assert tags["adf/pipeline_name"] == "dagster_train_model" and tags["adf/factory"] == adf.factory
    assert tags["team"] == "ml"
    assert "pca_components: 10" in dagster_run["runConfigYaml"]
    assert (site["storage"] / "models" / "mnist" / "current.json").exists()
    # It polled until the end (more than one status request), with the managed identity's token each time.
    assert len(run.runs_of("Get status")) >= 2 and run.runs_of("Get failure") == []
    # Every request went to the gateway with a token the managed identity got for the gateway's audience.
    assert {r["url"] for r in adf.requests} == {site["gateway"]}
    assert {r["headers"]["Authorization"].removeprefix("Bearer ") for r in adf.requests} <= identity.tokens
    assert set(identity.audiences) == {AUDIENCE}
    print(f"instance storage: {site['instance'].storage} ({site['instance'].reason})")


def test_invalid_run_config_fails_the_pipeline_with_dagsters_message(site: dict[str, Any]) -> None:
    bad = {"ops": {"mnist_model": {"config": {"pca_components": "many"}}}}
    run = interpreter(site).run(template("train_model"), params(site["gateway"], run_config=bad))
    assert run.status == "Failed", explain(run)
    assert run.error is not None and run.error["errorCode"] == "DagsterLaunchFailed"
    assert run.error["message"].startswith(
        "Dagster did not launch job train_model: RunConfigValidationInvalid"
    )
    assert 'Value \\"many\\"' in run.error["message"] and "pca_components" in run.error["message"]
    # HTTP 200 (the Web activity succeeded, no retry); nothing was started, nothing polled.
    assert [(a.status, a.attempts) for a in run.runs_of("Launch")] == [("Succeeded", 1)]
    assert run.runs_of("Wait for run")[0].status == "Skipped"
    assert runs_for(site["url"], run.run_id) == []


def test_unknown_job_fails_the_pipeline_at_launch(site: dict[str, Any]) -> None:
    stale = template("train_model")  # as if the job had been renamed since the template was imported
    body = stale["properties"]["activities"][0]["typeProperties"]["body"]
    body["value"] = body["value"].replace('"jobName":"train_model"', '"jobName":"retired_job"')
    run = interpreter(site).run(stale, params(site["url"]))  # straight to the webserver
    assert run.status == "Failed", explain(run)
    assert run.error == {
        "message": "Dagster did not launch job train_model: PipelineNotFoundError: "
        "Could not find Pipeline mnist.__repository__.retired_job",
        "errorCode": "DagsterLaunchFailed",
    }
    assert runs_for(site["url"], run.run_id) == []


def test_run_failure_fails_the_pipeline_with_the_runs_error(site: dict[str, Any], trained: Trained) -> None:
    batch = site["storage"] / "inference" / "not-digits"
    batch.mkdir(parents=True)
    (batch / "notes.idx3-ubyte.gz").write_bytes(b"these are not MNIST images")
    run = interpreter(site).run(template("score_batch"), params(site["gateway"], partition_key="not-digits"))
    assert run.status == "Failed", explain(run)
    assert run.error is not None and run.error["errorCode"] == "DagsterRunFailed"
    message = run.error["message"]
    assert message.startswith(f"Dagster run {run.variables['run_id']} of job score_batch ended FAILURE: "), (
        message
    )
    assert "notes.idx3-ubyte.gz" in message, message
    [dagster_run] = runs_for(site["url"], run.run_id)
    assert dagster_run["status"] == "FAILURE"
    assert {"key": "dagster/partition", "value": "not-digits"} in dagster_run["tags"]
    # The partition was added and the failure read through the gateway (its policy allows both).
    assert [a.status for a in run.runs_of("Add partition")] == ["Succeeded"]
    assert [a.status for a in run.runs_of("Get failure")] == ["Succeeded"]


def test_a_job_the_identity_may_not_launch_fails_at_the_gateway(site: dict[str, Any]) -> None:
    """mnist_pipeline is not in the ADF identity's allowlist: the gateway refuses its launch (403)."""
    run = interpreter(site).run(template("mnist_pipeline"), params(site["gateway"], partition_key="x"))
    assert run.status == "Failed", explain(run)
    # Its partitions are score_batch's (inference_batches), which the identity may add; the launch is not.
    assert [a.status for a in run.runs_of("Add partition")] == ["Succeeded"]
    [launch] = run.runs_of("Launch")
    assert launch.status == "Failed" and launch.error is not None and launch.attempts == 4  # ADF retried
    assert "'403'" in launch.error["message"], launch.error
    assert "job 'mnist_pipeline' is not allowed for this identity" in launch.error["message"]
    assert run.runs_of("Wait for run")[0].status == "Skipped"
    assert runs_for(site["url"], run.run_id) == []


class _LosingProxy(ThreadingHTTPServer):
    """Forwards to the gateway, but loses the answer to the first launch (as a timeout would)."""

    upstream: str
    launches_forwarded: int
    lost: int


class _ProxyHandler(BaseHTTPRequestHandler):
    def _server(self) -> _LosingProxy:
        return cast(_LosingProxy, self.server)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        headers = {"Content-Type": "application/json", "Authorization": self.headers["Authorization"]}
        request = urllib.request.Request(self._server().upstream, body, headers)
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            request, timeout=60
        ) as response:
            answer, code = response.read(), response.status
        if b"launchRun" in body:
            self._server().launches_forwarded += 1
            if self._server().lost == 0:  # Dagster has accepted it; the caller never hears so
                self._server().lost += 1
                code, answer = 504, b'{"message": "gateway timeout"}'
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def losing_proxy(site: dict[str, Any]) -> Iterator[_LosingProxy]:
    proxy = _LosingProxy(("127.0.0.1", 0), _ProxyHandler)
    proxy.upstream, proxy.launches_forwarded, proxy.lost = site["gateway"], 0, 0
    thread = threading.Thread(target=proxy.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()


def test_retried_launch_starts_exactly_one_run(
    site: dict[str, Any], trained: Trained, losing_proxy: _LosingProxy
) -> None:
    batch = site["storage"] / "inference" / "retry-batch"
    batch.mkdir(parents=True)
    (batch / "digits.idx3-ubyte.gz").write_bytes(encode_idx(make_digits(20, seed=5)[0]))
    url = f"http://127.0.0.1:{losing_proxy.server_address[1]}/graphql"
    run = interpreter(site).run(template("score_batch"), params(url, partition_key="retry-batch"))
    assert run.status == "Succeeded", explain(run)
    [launch] = run.runs_of("Launch")
    # ADF retried and both launches passed the gateway to Dagster; its run coordinator kept one run.
    assert launch.attempts == 2 and losing_proxy.launches_forwarded == 2
    [dagster_run] = runs_for(site["url"], run.run_id)  # exactly one run for the ADF run id
    assert dagster_run["runId"] == run.variables["run_id"] and dagster_run["status"] == "SUCCESS"
    assert (
        len((site["storage"] / "predictions" / "retry-batch" / "predictions.csv").read_text().splitlines())
        == 21
    )


def test_concurrent_duplicate_launches_start_one_run(site: dict[str, Any]) -> None:
    key = str(uuid.uuid4())
    # A partition that exists (one that does not is refused at launch), with no batch behind it.
    added = graphql(
        site["url"],
        ADD_PARTITION_QUERY,
        {
            "repositorySelector": {"repositoryLocationName": "mnist", "repositoryName": "__repository__"},
            "partitionsDefName": "inference_batches",
            "partitionKey": "absent",
        },
    )["addDynamicPartition"]
    assert added["__typename"] == "AddDynamicPartitionSuccess", added
    execution_params = {
        "selector": {
            "repositoryLocationName": "mnist",
            "repositoryName": "__repository__",
            "jobName": "score_batch",
        },
        "runConfigData": {},
        "executionMetadata": {
            "tags": [
                {"key": "adf/pipeline_run_id", "value": key},
                {"key": "dagster/partition", "value": "absent"},
            ]
        },
    }

    def launch(_: int) -> str:
        answer = graphql(site["url"], LAUNCH_QUERY, {"executionParams": execution_params})["launchRun"]
        assert answer["__typename"] == "LaunchRunSuccess", answer
        return answer["run"]["runId"]

    with ThreadPoolExecutor(6) as pool:
        run_ids = set(pool.map(launch, range(6)))
    assert len(run_ids) == 1, f"one run for one key, got {run_ids}"
    assert [r["runId"] for r in runs_for(site["url"], key)] == list(run_ids)
    # A later duplicate (after the run ended) answers with the same run too.
    deadline = time.monotonic() + 120
    while runs_for(site["url"], key)[0]["status"] not in ("SUCCESS", "FAILURE", "CANCELED"):
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(0.5)
    assert launch(0) in run_ids and len(runs_for(site["url"], key)) == 1
