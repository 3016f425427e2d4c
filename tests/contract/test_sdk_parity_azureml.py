"""SDK parity for AzureML: every call the backends make by hand is also made by the real SDK, and the
two requests are compared.

The product calls AzureML over REST (azure-core), not through azureml-pipeline-core or azure-ai-ml.
For each remote operation it performs, the SDK's equivalent is driven against the same contract fake
(on the same run, endpoint or job), and the requests the fake received are compared on: method, host
and path, api-version, the other query parameters, the body's field names (JSON key paths, exact
casing; keys a user names, such as parameter names or property keys, count as one `*`), and the token
audience. A difference fails unless `ALLOWED` lists it with the reason it is safe; an entry that no
longer differs fails too, and each entry must be in docs/azure-fidelity.md's table.

Audiences: both sides get their tokens from the fakes' credential, whose tokens carry the audience
they were asked for (`tests/support/fakes/http.py`); the comparison reads it from each request.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from resources.compute import WorkloadRequest
from resources.compute.azureml import AzureMLBatchEndpointBackend, AzureMLPipelineBackend
from tests.support.fakes.azureml_v1 import FakeAzureMLPipelines
from tests.support.fakes.azureml_v2 import FakeAzureMLBatch
from tests.support.fakes.http import FakeCredential, token_audience, token_for
from tests.support.fakes.jobs import FakeWorkspace, Seen

pytest.importorskip("azureml.pipeline.core", reason="azureml-pipeline-core is in the dev extra")
pytest.importorskip("azure.ai.ml", reason="azure-ai-ml is in the dev extra")

DOCS = Path(__file__).resolve().parents[2] / "docs" / "azure-fidelity.md"
ASPECTS = ("method", "host", "path", "api-version", "query", "body", "audience")

# (service, operation, aspect) -> why the difference is safe. Kept in docs/azure-fidelity.md too.
ALLOWED: dict[tuple[str, str, str], str] = {
    ("v2", "deployment", "api-version"): (
        "the SDK pins 2024-01-01-preview for deployments; we use GA 2023-10-01, whose spec defines the same "
        "path and the fields we read (properties.model.assetId), and the fake answers in that spec"
    ),
    ("v2", "model", "api-version"): (
        "the SDK pins 2023-08-01-preview for models; we use GA 2023-10-01, whose spec defines the same path "
        "and properties.modelUri"
    ),
    ("v2", "job", "api-version"): (
        "the SDK pins 2024-01-01-preview for jobs; we use GA 2023-10-01, whose spec defines Jobs_Get on the "
        "same path with properties.status and services"
    ),
    ("v2", "job (not found)", "api-version"): (
        "as for job: Jobs_Get of GA 2023-10-01; a 404 there means no job has that name"
    ),
    ("v2", "cancel", "api-version"): (
        "the SDK pins 2023-04-01-preview for cancel; we use GA 2023-10-01, whose spec defines Jobs_Cancel on "
        "the same path"
    ),
    ("v2 rollout", "model (register)", "api-version"): (
        "the SDK pins 2023-08-01-preview for models; we use GA 2023-10-01, whose spec defines ModelVersions_CreateOrUpdate "
        "on the same path with the same ModelVersion properties"
    ),
    ("v2 rollout", "deployment update", "api-version"): (
        "the SDK pins 2024-01-01-preview for deployments; we use GA 2023-10-01, whose spec defines "
        "BatchDeployments_CreateOrUpdate on the same path, its long-running operation and every property we send"
    ),
    ("v2 rollout", "deployment update", "body"): (
        "we send the deployment back as the service returned it, with the model changed; the SDK serialises its "
        "entity, which adds empty maps the resource does not carry (tags, properties.properties, "
        "properties.environmentVariables): an empty map and an absent one mean the same"
    ),
    ("v2 rollout", "endpoint default", "body"): (
        "as for the deployment update: the endpoint as read, defaults changed; the SDK adds empty tags and "
        "properties.properties"
    ),
    ("v2 training", "command job (submit)", "api-version"): (
        "the SDK pins 2025-01-01-preview for job creation; we use GA 2023-10-01, whose spec defines Jobs_CreateOrUpdate "
        "on the same path and every CommandJob property we send (the fake validates the body against that spec)"
    ),
    ("v2 training", "command job", "api-version"): (
        "the SDK pins 2024-01-01-preview for jobs; we use GA 2023-10-01, whose spec defines Jobs_Get on the same "
        "path with properties.status, properties.properties and services"
    ),
    ("v2 training", "command job (not found)", "api-version"): (
        "as for command job: Jobs_Get of GA 2023-10-01; a 404 there means no job has that name"
    ),
    ("v2 training", "command job cancel", "api-version"): (
        "the SDK pins 2023-04-01-preview for cancel; we use GA 2023-10-01, whose spec defines Jobs_Cancel on the "
        "same path"
    ),
    ("v2 training", "model (register, training)", "api-version"): (
        "the SDK pins 2023-08-01-preview for models; we use GA 2023-10-01, whose spec defines "
        "ModelVersions_CreateOrUpdate on the same path with the same ModelVersion properties"
    ),
}


# ---- audiences ------------------------------------------------------------------------------------------------
def _audience(scope_or_resource: str) -> str:
    """'https://x/.default' and 'https://x/' are the same audience: 'https://x'."""
    return scope_or_resource.removesuffix("/.default").rstrip("/")


def _token_audience(authorization: str | None) -> str | None:
    """The audience the request's bearer token was asked for (None: no token)."""
    scheme, _, token = (authorization or "").partition(" ")
    return _audience(token_audience(token)) if scheme == "Bearer" and token else None


# ---- comparing ----------------------------------------------------------------------------------------------------
def _key_paths(value: Any, free: frozenset[str], at: str = "") -> set[str]:
    """The JSON key paths of `value`; below a path in `free`, keys are user-named and count as '*'."""
    if isinstance(value, list):
        return set().union(*(_key_paths(v, free, f"{at}[]") for v in value)) if value else {f"{at}[]"}
    if not isinstance(value, dict):
        return set()
    paths: set[str] = set()
    for key, sub in value.items():
        path = f"{at}.*" if at in free else (f"{at}.{key}" if at else str(key))
        paths.add(path)
        paths |= _key_paths(sub, free, path)
    return paths


def _shape(seen: Seen, free: frozenset[str]) -> dict[str, Any]:
    return {
        "method": seen.method,
        "host": seen.host,
        "path": seen.path,
        "api-version": seen.query.get("api-version"),
        "query": {k: v for k, v in seen.query.items() if k != "api-version"},
        "body": sorted(_key_paths(seen.body, free)),
        "audience": _token_audience(seen.headers.get("authorization")),
    }


def _requests(fake: FakeWorkspace, route: str, action: Callable[[], Any]) -> list[Seen]:
    start = len(fake.seen)
    action()
    return [s for s in fake.seen[start:] if s.route == route]


class Parity:
    """Collects, per operation, the product's request and the SDK's, and what differs."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.differences: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self.compared: list[str] = []

    def compare(
        self, operation: str, ours: list[Seen], sdk: list[Seen], free: frozenset[str] = frozenset()
    ) -> None:
        assert ours, f"{operation}: the product made no such request"
        assert sdk, f"{operation}: the SDK made no such request"
        mine, theirs = _shape(ours[0], free), _shape(sdk[0], free)
        for aspect in ASPECTS:
            if mine[aspect] != theirs[aspect]:
                self.differences[(self.service, operation, aspect)] = (mine[aspect], theirs[aspect])
        self.compared.append(operation)

    def check(self) -> None:
        allowed = {k for k in ALLOWED if k[0] == self.service}
        unexplained = {k: v for k, v in self.differences.items() if k not in allowed}
        assert not unexplained, (
            f"differences from the SDK with no reason in ALLOWED (ours, SDK's): {unexplained}"
        )
        stale = allowed - set(self.differences)
        assert not stale, f"ALLOWED lists differences that are gone: {sorted(stale)}"


def test_the_comparison_sees_every_aspect() -> None:
    """A request that differs in any one aspect is reported as differing in exactly that aspect."""
    base = Seen(
        "r",
        "POST",
        "h:1",
        "/a/b",
        {"api-version": "1", "x": "y"},
        {"authorization": f"Bearer {token_for('https://ml.azure.com/')}"},
        {"properties": {"name": "j", "inputData": {"batch": {"uri": "u"}}}},
    )
    variants = {
        "method": {"method": "PUT"},
        "host": {"host": "h:2"},
        "path": {"path": "/a/c"},
        "api-version": {"query": {"api-version": "2", "x": "y"}},
        "query": {"query": {"api-version": "1", "x": "z"}},
        "body": {"body": {"properties": {"Name": "j", "inputData": {"batch": {"uri": "u"}}}}},
        "audience": {"headers": {"authorization": f"Bearer {token_for('https://management.azure.com/')}"}},
    }
    free = frozenset({"properties.inputData"})
    for aspect, change in variants.items():
        parity = Parity("test")
        parity.compare("op", [base], [Seen(**{**base.__dict__, **change})], free)
        assert set(parity.differences) == {("test", "op", aspect)}, aspect
    same = Parity("test")
    renamed = {"properties": {"name": "k", "inputData": {"other": {"uri": "v"}}}}
    same.compare("op", [base], [Seen(**{**base.__dict__, "body": renamed})], free)
    assert not same.differences, "values and user-named keys are not field names"


def test_every_allowed_difference_is_in_the_docs_table() -> None:
    text = DOCS.read_text()
    for service, operation, aspect in ALLOWED:
        assert f"| {operation} | {aspect} |" in text, (
            f"docs/azure-fidelity.md lacks ({service}, {operation}, {aspect})"
        )


# ---- v1: pipeline endpoints and run history ----------------------------------------------------------------------------
@pytest.fixture
def v1() -> Iterator[FakeAzureMLPipelines]:
    fake = FakeAzureMLPipelines(None, mode="simulate", allow_reuse=False).start()
    try:
        yield fake
    finally:
        fake.stop()


def _v1_backend(fake: FakeAzureMLPipelines, **kw: Any) -> AzureMLPipelineBackend:
    settings: dict[str, Any] = {
        "subscription_id": fake.subscription,
        "resource_group": fake.resource_group,
        "workspace_name": fake.workspace,
        "datastore": fake.datastore,
        "service_url": fake.url,
        "allow_http_loopback": True,
        "credential": "python:tests.support.fakes.http:fake_credential",
        "pipeline_endpoint": fake.endpoint_name,
        "experiment_name": "parity",
        "pipes": False,
        **kw,
    }
    return AzureMLPipelineBackend(**settings)


def _wait(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert condition(), "timed out"


def test_v1_calls_match_azureml_pipeline_core(
    v1: FakeAzureMLPipelines, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.azureml_sdk import V1Sdk, sdk_environment

    parity = Parity("v1")
    v1.run_s = 30  # still running when its steps and logs are read; cancelled at the end
    ours = _v1_backend(v1)
    pinned = _v1_backend(v1, pipeline_version="0")
    by_id = _v1_backend(v1, pipeline_endpoint=None, pipeline_endpoint_id=v1.endpoint_id)
    request = WorkloadRequest(
        "train",
        f"run-{uuid.uuid4()}/trained/-/train",
        {"raw": "raw/mnist/r1"},
        {"model": "models/mnist/m1"},
        {"pca_components": 20, "seed": 0},
    )
    parameters = {"pca_components": "20", "seed": "0"}
    datapaths = {"raw_data": "raw/mnist/r1"}
    submission = frozenset({"ParameterAssignments", "DataPathAssignments", "Properties", "tags"})
    with sdk_environment(tmp_path, monkeypatch, AZUREML_DISCOVERY_SERVICE_ENDPOINT=f"{v1.url}/discovery"):
        sdk = V1Sdk(v1, "parity", token_for)
        parity.compare(
            "endpoint by name",
            _requests(v1, "endpoint_by_name", ours.endpoint),
            _requests(v1, "endpoint_by_name", sdk.endpoint_by_name),
        )
        parity.compare(
            "endpoint by id",
            _requests(v1, "endpoint_by_id", by_id.endpoint),
            _requests(v1, "endpoint_by_id", sdk.endpoint_by_id),
        )
        run_id = ""

        def our_submit() -> None:
            nonlocal run_id
            run_id = ours.submit(request, None, {})  # type: ignore[arg-type]

        parity.compare(
            "submit",
            _requests(v1, "submit", our_submit),
            _requests(v1, "submit", lambda: sdk.submit(parameters, datapaths)),
            submission,
        )
        pinned.endpoint()
        parity.compare(
            "submit (pinned version)",
            _requests(v1, "submit", lambda: pinned.submit(request, None, {})),  # type: ignore[arg-type]
            _requests(v1, "submit", lambda: sdk.submit(parameters, datapaths, version="0")),
            submission,
        )
        parity.compare(
            "run status",
            _requests(v1, "run_status", lambda: ours.status(run_id)),
            _requests(v1, "run_status", lambda: sdk.run_status(run_id)),
        )
        parity.compare(
            "runs:query",
            _requests(v1, "runs_query", lambda: ours.find_job(request)),
            _requests(v1, "runs_query", lambda: sdk.find_runs({"dagster.key_digest": request.key_digest})),
        )
        _wait(lambda: v1.runs[run_id].job.state != "NotStarted")
        step_id = v1.runs[run_id].step_id
        parity.compare(
            "children",
            _requests(v1, "children", lambda: ours.new_log_lines(run_id)),
            _requests(v1, "children", lambda: sdk.children(run_id)),
        )
        parity.compare(
            "details",
            _requests(v1, "details", lambda: ours.new_log_lines(run_id)),
            _requests(v1, "details", lambda: sdk.details(step_id)),
        )
        parity.compare(
            "cancel",
            _requests(v1, "cancel", lambda: ours.cancel(run_id)),
            _requests(v1, "cancel", lambda: sdk.cancel(run_id)),
        )
    # The step's log is read from the SAS URL run history hands out: no token goes with it.
    log_reads = [s for s in v1.seen if s.route == "log_file"]
    assert log_reads and all("authorization" not in s.headers for s in log_reads)
    parity.check()


# ---- v2: batch endpoints, deployments, models, jobs ----------------------------------------------------------------------
@pytest.fixture
def v2() -> Iterator[FakeAzureMLBatch]:
    fake = FakeAzureMLBatch(None, mode="simulate").start()
    fake.deploy("models/mnist/m1/model")
    try:
        yield fake
    finally:
        fake.stop()


def test_v2_calls_match_azure_ai_ml(
    v2: FakeAzureMLBatch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from resources.compute.azureml.batch_endpoint_scoring import job_name
    from tests.support.azureml_sdk import V2Sdk, sdk_environment

    parity = Parity("v2")
    v2.run_s = 30
    ours = AzureMLBatchEndpointBackend(
        subscription_id=v2.subscription,
        resource_group=v2.resource_group,
        workspace_name=v2.workspace,
        datastore=v2.datastore,
        arm_url=v2.url,
        service_url=v2.url,
        allow_http_loopback=True,
        credential="python:tests.support.fakes.http:fake_credential",
        endpoint_name=v2.endpoint_name,
        deployment_name="blue",
    )
    request = WorkloadRequest(
        "score",
        f"run-{uuid.uuid4()}/scored/-/score",
        {"model": "models/mnist/m1/model", "batch": "inference/b1"},
        {"predictions": "predictions/b1"},
    )
    paths = f"azureml://datastores/{v2.datastore}/paths"
    with sdk_environment(tmp_path, monkeypatch, AZUREML_DEV_URL_MFE=v2.url):
        sdk = V2Sdk(v2, FakeCredential())
        endpoint = ours._endpoint()
        _, deployment = ours._deployment(endpoint)
        parity.compare(
            "endpoint", _requests(v2, "endpoint", ours._endpoint), _requests(v2, "endpoint", sdk.endpoint)
        )
        parity.compare(
            "deployment",
            _requests(v2, "deployment", lambda: ours._deployment(endpoint)),
            _requests(v2, "deployment", lambda: sdk.deployment("blue")),
        )
        parity.compare(
            "model",
            _requests(v2, "model", lambda: ours._check_model("blue", deployment, "models/mnist/m1/model")),
            _requests(v2, "model", lambda: sdk.model("mnist", "1")),
        )
        job = ""

        def our_invoke() -> None:
            nonlocal job
            job = ours.submit(request, None, {})  # type: ignore[arg-type]

        parity.compare(
            "invoke",
            _requests(v2, "invoke", our_invoke),
            _requests(
                v2,
                "invoke",
                lambda: sdk.invoke(
                    "blue",
                    f"{paths}/inference/b1/",
                    f"{paths}/_batch_outputs/sdk/",
                    "sdk-job",
                    ours.experiment_name,
                ),
            ),
            frozenset({"properties.inputData", "properties.outputData", "properties.properties"}),
        )
        parity.compare(
            "job", _requests(v2, "job", lambda: ours.status(job)), _requests(v2, "job", lambda: sdk.job(job))
        )
        # The job's logs, through run history, as azure-ai-ml's jobs.stream / jobs.download read them.
        _wait(lambda: v2.jobs[job].job.state == "Running" and v2.jobs[job].job.log is not None)
        ours.status(job)
        step = v2.jobs[job].child_run
        parity.compare(
            "run children",
            _requests(v2, "run_children", lambda: ours.new_log_lines(job)),
            _requests(v2, "run_children", lambda: sdk.run_children(job)),
        )
        parity.compare(
            "run details",
            _requests(v2, "run_details", lambda: ours.new_log_lines(job)),
            _requests(v2, "run_details", lambda: sdk.run_details(step)),
        )
        log_url = next(iter(sdk.run_details(step)["logFiles"].values()))
        parity.compare(
            "log file",
            _requests(v2, "batch_log", lambda: ours.new_log_lines(job)),
            _requests(v2, "batch_log", lambda: sdk.log_file(log_url)),
        )
        missing = WorkloadRequest("score", "never/submitted", request.inputs, request.outputs)
        assert ours.find_job(missing) is None and not sdk.job(job_name(missing))
        parity.compare(
            "job (not found)",
            _requests(v2, "job", lambda: ours.find_job(missing)),
            _requests(v2, "job", lambda: sdk.job(job_name(missing))),
        )
        parity.compare(
            "cancel",
            _requests(v2, "cancel", lambda: ours.cancel(job)),
            _requests(v2, "cancel", lambda: sdk.cancel(job)),
        )
    # Log files are read from the SAS URL run history hands out: no token goes with them.
    log_reads = [s for s in v2.seen if s.route == "batch_log"]
    assert log_reads and all("authorization" not in s.headers for s in log_reads)
    parity.check()


# ---- v2: the rollout to the batch deployment (model registration, deployment update, endpoint default) --------------
def test_v2_rollout_calls_match_azure_ai_ml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from resources.serving import PromotedModel
    from resources.serving.azureml_batch import AzureMLBatchDeploymentServing
    from resources.storage import LocalObjectStore
    from tests.support.azureml_sdk import V2Sdk, sdk_environment
    from tests.support.fakes.azureml_v2_serving import FakeAzureMLServing

    store = LocalObjectStore(root=str(tmp_path / "datastore"))
    for version in ("m1", "m2", "m3"):
        store.put_bytes(f"models/mnist/{version}/model/MLmodel", b"flavors: {}\n")
    fake = FakeAzureMLServing(store, mode="simulate", update_s=0.2).start()
    fake.deploy("models/mnist/m1/model")
    fake.deploy("models/mnist/m1/model", deployment="green", default=False)
    log = logging.getLogger("parity")
    parity = Parity("v2 rollout")
    ours = AzureMLBatchDeploymentServing(
        subscription_id=fake.subscription,
        resource_group=fake.resource_group,
        workspace_name=fake.workspace,
        datastore=fake.datastore,
        arm_url=fake.url,
        allow_http_loopback=True,
        credential="python:tests.support.fakes.http:fake_credential",
        endpoint_name=fake.endpoint_name,
        poll_initial_seconds=0.05,
        poll_floor_seconds=0.1,
        poll_max_seconds=0.2,
    )
    scoring = ours._scoring()
    paths = f"azureml://datastores/{fake.datastore}/paths"
    try:
        with sdk_environment(tmp_path, monkeypatch, AZUREML_DEV_URL_MFE=fake.url):
            sdk = V2Sdk(fake, FakeCredential())
            asset_id = ""

            def our_register() -> None:
                nonlocal asset_id
                asset_id = ours._register(scoring, PromotedModel("m2", "models/mnist/m2/model"), log)

            parity.compare(
                "model (register)",
                _requests(fake, "model_put", our_register),
                _requests(
                    fake,
                    "model_put",
                    lambda: sdk.register_model(  # the same version again, as deploy_batch.py writes it
                        "mnist",
                        "m2",
                        f"{paths}/models/mnist/m2/model",
                        {"dagster.model_version": "m2", "dagster.model_path": "models/mnist/m2/model"},
                    ),
                ),
                frozenset({"properties.tags"}),
            )
            operation: str | None = None

            def our_update() -> None:
                nonlocal operation
                operation = ours._put_deployment(
                    scoring, "blue", ours._read_deployment(scoring, "blue"), asset_id
                )

            ours_put = _requests(fake, "deployment_put", our_update)
            assert operation is not None
            url = operation
            ours_op = _requests(
                fake, "operation", lambda: ours._wait(lambda: ours._operation_done(scoring, url), "op")
            )
            fake.models[("mnist", "m3")] = (
                f"{paths}/models/mnist/m3/model"  # registered by an earlier rollout
            )
            sdk_seen_from = len(fake.seen)
            sdk.update_deployment("blue", fake._arm_id("models/mnist/versions/m3"))
            sdk_seen = fake.seen[sdk_seen_from:]
            parity.compare(
                "deployment update", ours_put, [s for s in sdk_seen if s.route == "deployment_put"]
            )
            parity.compare(
                "deployment update status",
                _operation_path(ours_op),
                _operation_path([s for s in sdk_seen if s.route == "operation"]),
            )
            parity.compare(
                "endpoint default",
                _requests(fake, "endpoint_put", lambda: ours._set_default(scoring, "green", log)),
                _requests(fake, "endpoint_put", lambda: sdk.set_default("blue")),
            )
        assert fake.deployment_updates == ["blue", "blue"] and fake.endpoint_updates == 2
        parity.check()
    finally:
        fake.stop()


def _operation_path(seen: list[Seen]) -> list[Seen]:
    """Operation status requests with the operation's id (a value the service hands out) as `{id}`."""
    import dataclasses
    import re

    return [
        dataclasses.replace(
            s, path=re.sub(r"/mfeOperationsStatus/[^/]+$", "/mfeOperationsStatus/{id}", s.path)
        )
        for s in seen
    ]


# ---- v2 training: command jobs, their run history and log, the model registration ---------------------------------
def test_v2_training_calls_match_azure_ai_ml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every call of resources/compute/azureml/command_job_training.py against azure-ai-ml's
    `jobs.create_or_update(command(...))`, `jobs.get`, `jobs.begin_cancel`, `jobs.stream`'s run-history and
    log calls, and `models.create_or_update(Model(type=mlflow_model, path=azureml://datastores/...))`.

    The workload package reaches the datastore through the object store (Blob), not an AzureML call: the job
    mounts it as the uri_folder input `code`, and the SDK's job is given the same input."""
    from resources.compute.azureml import AzureMLCommandJobBackend
    from resources.storage import LocalObjectStore
    from tests.support.azureml_sdk import V2Sdk, sdk_environment
    from tests.support.fakes.azureml_v2_training import FakeAzureMLV2

    store = LocalObjectStore(root=str(tmp_path / "datastore"))
    store.put_bytes("models/mnist/m1/model/MLmodel", b"flavors: {}\n")
    fake = FakeAzureMLV2(store, mode="simulate").start()
    fake.run_s = 30  # still running when its details and log are read; cancelled at the end
    parity = Parity("v2 training")
    ours = AzureMLCommandJobBackend(
        subscription_id=fake.subscription,
        resource_group=fake.resource_group,
        workspace_name=fake.workspace,
        datastore=fake.datastore,
        arm_url=fake.url,
        service_url=fake.url,
        compute_name="cpu-cluster",
        allow_http_loopback=True,
        credential="python:tests.support.fakes.http:fake_credential",
    )
    request = WorkloadRequest(
        "train",
        f"run-{uuid.uuid4()}/trained/-/train",
        {"raw": "raw/mnist/r1"},
        {"model": "models/mnist/m1"},
        {"pca_components": 20, "seed": 0},
    )
    env = {"DAGSTER_PIPES_CONTEXT": "e30=", "DAGSTER_PIPES_MESSAGES": "e30="}
    paths = f"azureml://datastores/{fake.datastore}/paths"
    user_named = frozenset(
        {
            "properties.inputs",
            "properties.outputs",
            "properties.environmentVariables",
            "properties.properties",
            "properties.tags",
        }
    )
    # Outside a git checkout: azure-ai-ml adds the checkout's git properties to a new job's properties, which an
    # update may not change.
    monkeypatch.chdir(tmp_path)
    try:
        with sdk_environment(tmp_path, monkeypatch, AZUREML_DEV_URL_MFE=fake.url):
            sdk = V2Sdk(fake, FakeCredential())
            job = ""

            def our_submit() -> None:
                nonlocal job
                job = ours.submit(request, store, env)

            ours_put = _requests(fake, "job_put", our_submit)
            # The SDK sends the same job again (same name, what the backend asked for): an update, as the
            # backend's own resent PUT is.
            sent = json.loads(json.dumps(fake.command_jobs[job].properties))
            parity.compare(
                "command job (submit)",
                ours_put,
                _requests(
                    fake,
                    "job_put",
                    lambda: sdk.command_job(
                        job,
                        sent["command"],
                        {k: v["uri"] for k, v in sent["inputs"].items()},
                        {k: v["uri"] for k, v in sent["outputs"].items()},
                        environment=f"azureml:{ours.environment}",
                        compute=ours.compute_name,
                        experiment=ours.experiment_name,
                        environment_variables=dict(sent["environmentVariables"]),
                        display_name=sent["displayName"],
                        description=sent["description"],
                        properties=dict(sent["properties"]),
                        tags=dict(sent["tags"]),
                    ),
                ),
                user_named,
            )
            assert fake.submissions == 1 and fake.command_jobs[job].puts == 2
            parity.compare(
                "command job",
                _requests(fake, "job", lambda: ours.status(job)),
                _requests(fake, "job", lambda: sdk.job(job)),
            )
            missing = WorkloadRequest("train", "never/submitted", request.inputs, request.outputs)
            assert ours.find_job(missing) is None and not sdk.job(ours.job_name(missing, 1))
            parity.compare(
                "command job (not found)",
                _requests(fake, "job", lambda: ours.find_job(missing)),
                _requests(fake, "job", lambda: sdk.job(ours.job_name(missing, 1))),
            )
            # The job's log, as azure-ai-ml's jobs.stream reads a command job: its run's details, then the
            # SAS URL of user_logs/std_log.txt.
            sim = fake.command_jobs[job].job
            _wait(lambda: sim.state == "Running" and sim.log is not None and sim.log.exists())
            ours.status(job)
            details = ("run_details", "history_details")  # workspace- or experiment-scoped Runs_GetDetails
            parity.compare(
                "command job run details",
                _requests_any(fake, details, lambda: ours.new_log_lines(job)),
                _requests_any(fake, details, lambda: sdk.run_details(job)),
            )
            log_url = sdk.run_details(job)["logFiles"]["user_logs/std_log.txt"]
            parity.compare(
                "command job log file",
                _requests(fake, "std_log", lambda: ours.new_log_lines(job)),
                _requests(fake, "std_log", lambda: sdk.log_file(log_url)),
            )
            parity.compare(
                "command job cancel",
                _requests(fake, "cancel", lambda: ours.cancel(job)),
                _requests(fake, "cancel", lambda: sdk.cancel(job)),
            )
            parity.compare(
                "model (register, training)",
                _requests(fake, "model_put", lambda: ours._register_model(job, request)),
                _requests(
                    fake,
                    "model_put",
                    lambda: sdk.register_trained_model(  # the same version again
                        "mnist",
                        "m1",
                        f"{paths}/models/mnist/m1/model",
                        job,
                        f"MNIST model trained by Dagster ({request.idempotency_key})",
                        {
                            "dagster.idempotency_key": request.idempotency_key,
                            "dagster.key_digest": request.key_digest,
                        },
                        {"dagster.job": job},
                    ),
                ),
                frozenset({"properties.properties", "properties.tags"}),
            )
        # The log is read from the SAS URL run history hands out: no token goes with it.
        log_reads = [s for s in fake.seen if s.route == "std_log"]
        assert log_reads and all("authorization" not in s.headers for s in log_reads)
        assert set(fake.models) == {("mnist", "m1")}
        parity.check()
    finally:
        fake.stop()


def _requests_any(fake: FakeWorkspace, routes: tuple[str, ...], action: Callable[[], Any]) -> list[Seen]:
    start = len(fake.seen)
    action()
    return [s for s in fake.seen[start:] if s.route in routes]
