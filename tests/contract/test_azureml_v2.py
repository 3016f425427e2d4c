"""AzureML v2 batch-endpoint scoring backend against the stateful contract fake (+ Azurite as datastore)."""

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
import pytest
from dagster._core.errors import DagsterExecutionInterruptedError

from resources.compute import ComputeBackend, JobStatus, LocalProcessBackend, WorkloadRequest, idempotency_key
from resources.compute.azureml import AzureMLBatchEndpointBackend
from resources.storage import ObjectStore
from tests.support.fakes.azureml_v2 import FakeAzureMLBatch
from tests.support.fakes.http import FAULTS
from tests.support.remote import error_text, interrupt_if_running, new_blob_store

pytestmark = pytest.mark.azurite

INSTANCE = dg.DagsterInstance.ephemeral()
MODEL = "models/mnist/m1/model"
BATCH = "inference/b1"
OUT = "predictions/b1"


@pytest.fixture
def store(azurite: dict[str, str]) -> ObjectStore:
    store = new_blob_store(azurite)
    store.put_bytes(f"{BATCH}/images.idx3-ubyte.gz", b"not read by the simulated deployment")
    return store


@pytest.fixture
def fake(store: ObjectStore) -> Iterator[FakeAzureMLBatch]:
    fake = FakeAzureMLBatch(store, mode="simulate").start()
    fake.deploy(MODEL)
    try:
        yield fake
    finally:
        fake.stop()


def backend(
    fake: FakeAzureMLBatch, cls: type[AzureMLBatchEndpointBackend] = AzureMLBatchEndpointBackend, **kw: Any
) -> AzureMLBatchEndpointBackend:
    settings: dict[str, Any] = {
        "subscription_id": fake.subscription,
        "resource_group": fake.resource_group,
        "workspace_name": fake.workspace,
        "datastore": fake.datastore,
        "arm_url": fake.url,
        "service_url": fake.url,  # run history: the job's logs and errors
        "allow_http_loopback": True,
        "credential": "python:tests.support.fakes.http:fake_credential",
        "endpoint_name": fake.endpoint_name,
        "poll_initial_seconds": 0.05,
        "poll_floor_seconds": 0.1,
        "poll_max_seconds": 0.2,
        "request_timeout_seconds": 0.5,
        **kw,
    }
    return cls(**settings)


def make_asset(retries: int = 0) -> dg.AssetsDefinition:
    @dg.asset(retry_policy=dg.RetryPolicy(max_retries=retries) if retries else None)
    def scored(
        context: dg.AssetExecutionContext, compute: ComputeBackend, storage: ObjectStore
    ) -> dg.MaterializeResult:
        request = WorkloadRequest(
            task="score",
            idempotency_key=idempotency_key(context, "score"),
            inputs={"model": MODEL, "batch": BATCH},
            outputs={"predictions": OUT},
        )
        result = compute.run(context, request, storage)
        return dg.MaterializeResult(
            metadata={"job": result.job_id, "reattached": result.reattached, **result.metadata}
        )

    return scored


def materialize(compute: ComputeBackend, store: ObjectStore, retries: int = 0) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [make_asset(retries)],
        resources={"compute": compute, "storage": store},
        instance=INSTANCE,
        raise_on_error=False,
    )


def test_success_invokes_once_and_copies_outputs(fake: FakeAzureMLBatch, store: ObjectStore) -> None:
    result = materialize(backend(fake), store)
    assert result.success, error_text(result)
    assert fake.invocations == 1
    [job] = fake.jobs.values()
    assert job.inputs == {
        "batch": {"jobinputtype": "UriFolder", "uri": f"azureml://datastores/mnist_blob/paths/{BATCH}/"}
    }
    out_uri = job.outputs["score"]["uri"]
    assert out_uri.startswith("azureml://datastores/mnist_blob/paths/_batch_outputs/")
    assert job.deployment_header is None, "no deployment named: the endpoint's default serves"
    assert store.get_json(f"{OUT}/summary.json")["images"] == 1
    assert store.get_bytes(f"{OUT}/predictions.csv").startswith(b"source_file,index")
    meta = result.asset_materializations_for_node("scored")[0].metadata
    assert meta["azureml_job"].value == job.name and meta["azureml_model"].value == "mnist:1"
    assert "ml.azure.com/runs/" + job.name in str(meta["azureml_job_url"].value)
    logs = [e.user_message for e in INSTANCE.all_logs(result.run_id)]
    assert any(f"batch job {job.name}: Completed" in m for m in logs)
    # The scoring script's output, read from the job's step in run history; its SAS URL never shown.
    stdout = "batchscoring/logs/user/stdout/10.0.0.4/process000.stdout.txt: "
    assert any(stdout in m and f"{job.name}: simulated scoring" in m for m in logs), logs
    assert not [m for m in logs if "sig=" in m or "/batchlogs/" in m]
    history = fake.server.calls_to("run_children") + fake.server.calls_to("run_details")
    assert history and {c.audience for c in history} == {"https://management.azure.com"}
    assert {c.audience for c in fake.server.calls_to("batch_log")} == {""}, "a SAS URL gets no token"


def test_each_submission_gets_a_fresh_output_path_and_the_fake_refuses_an_existing_one(
    fake: FakeAzureMLBatch, store: ObjectStore
) -> None:
    assert materialize(backend(fake), store).success
    assert materialize(backend(fake), store).success
    uris = [j.outputs["score"]["uri"] for j in fake.jobs.values()]
    assert len(set(uris)) == 2
    # The contract: invoking with an output path that exists fails.
    from resources.azure.errors import PermanentAzureError
    from resources.azure.rest import AzureRest
    from tests.support.fakes.http import FakeCredential

    rest = AzureRest(
        FakeCredential(), "https://ml.azure.com/.default", service="test", allow_http_loopback=True
    )
    body = {
        "properties": {
            "InputData": {
                "x": {"JobInputType": "UriFolder", "Uri": f"azureml://datastores/mnist_blob/paths/{BATCH}/"}
            },
            "OutputData": {"score": {"JobOutputType": "UriFolder", "Uri": uris[0]}},
        }
    }
    with pytest.raises(PermanentAzureError, match="already exists"):
        rest.call("POST", fake.scoring_uri, json_body=body, what="invoke", retry=False)


def test_named_deployment_does_not_leak_into_later_calls(fake: FakeAzureMLBatch, store: ObjectStore) -> None:
    fake.deploy(MODEL, deployment="green", default=False)
    b = backend(fake, deployment_name="green")
    assert materialize(b, store).success
    assert materialize(backend(fake), store).success
    first, second = fake.jobs.values()
    assert (first.deployment_header, first.deployment) == ("green", "green")
    assert (second.deployment_header, second.deployment) == (None, "blue")


def test_deployment_serving_another_model_fails_clearly(fake: FakeAzureMLBatch, store: ObjectStore) -> None:
    fake.deploy("models/mnist/older/model")
    result = materialize(backend(fake), store)
    assert not result.success
    text = error_text(result)
    assert "serves model mnist:2 from azureml://datastores/mnist_blob/paths/models/mnist/older/model" in text
    assert f"the promoted model is azureml://datastores/mnist_blob/paths/{MODEL}" in text
    assert "python -m deploy.azureml.deploy_batch" in text
    assert fake.invocations == 0


def test_remote_failure_is_surfaced_and_publishes_nothing(fake: FakeAzureMLBatch, store: ObjectStore) -> None:
    fake.fail_next = "scoring script crashed"
    result = materialize(backend(fake), store)
    assert not result.success
    text = error_text(result)
    # The job's error and its step's, as run history reports them, and where to look.
    assert "is Failed: Pipeline has failed child jobs" in text, text
    assert "step batchscoring: The scoring script failed: scoring script crashed" in text, text
    assert "; see https://ml.azure.com/runs/" in text and "sig=" not in text
    assert not store.exists(f"{OUT}/summary.json")


def test_without_a_region_a_failure_says_where_its_logs_would_come_from(
    fake: FakeAzureMLBatch, store: ObjectStore
) -> None:
    fake.fail_next = "scoring script crashed"
    result = materialize(backend(fake, service_url=None), store)
    text = error_text(result)
    assert "is Failed: set MNIST_AZUREML_REGION to read the job's error and logs" in text, text
    assert not fake.server.calls_to("run_details") and not fake.server.calls_to("run_children")


def test_run_history_faults_do_not_fail_the_step(fake: FakeAzureMLBatch, store: ObjectStore) -> None:
    """Logs are best effort: run history or a log file failing (after the retries) only costs log lines."""
    fake.server.inject("run_children", "500", "reset")
    fake.server.inject("batch_log", *["503"] * 20)
    result = materialize(backend(fake, request_retries=1), store)
    assert result.success, error_text(result)
    assert fake.invocations == 1


class InterruptedBackend(AzureMLBatchEndpointBackend):
    def wait(self, job_id: str, seconds: float) -> JobStatus:
        return interrupt_if_running(super().wait(job_id, seconds))


def test_cancel_from_dagster_cancels_the_batch_job(fake: FakeAzureMLBatch, store: ObjectStore) -> None:
    fake.run_s = 30
    with pytest.raises(DagsterExecutionInterruptedError):
        dg.materialize(
            [make_asset()], resources={"compute": backend(fake, InterruptedBackend), "storage": store}
        )
    [job] = fake.jobs.values()
    assert job.job.state == "Canceled"
    assert len(fake.server.calls_to("cancel", ok_only=True)) == 1
    assert not store.exists(f"{OUT}/summary.json")


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_at_every_call_still_one_invocation(
    fake: FakeAzureMLBatch, store: ObjectStore, fault: str
) -> None:
    for route in (
        "endpoint",
        "deployment",
        "model",
        "invoke",
        "jobs_list",
        "job",
        "run_children",
        "run_details",
    ):
        fake.server.inject(route, fault)
    result = materialize(backend(fake), store)
    assert result.success, error_text(result)
    assert fake.invocations == 1, "exactly one remote submission per Dagster step"
    assert {c.route for c in fake.server.calls if c.fault == fault} >= {"endpoint", "invoke", "job"}
    assert store.exists(f"{OUT}/summary.json")


class CrashAfterInvoke(AzureMLBatchEndpointBackend):
    crashed: ClassVar[list[str]] = []

    def submit(self, request: WorkloadRequest, store: ObjectStore, env: Any) -> str:
        job_id = super().submit(request, store, env)
        if not self.crashed:
            self.crashed.append(job_id)
            raise RuntimeError("step process lost")
        return job_id


def test_retried_step_reattaches_by_job_name(fake: FakeAzureMLBatch, store: ObjectStore) -> None:
    CrashAfterInvoke.crashed.clear()
    result = materialize(backend(fake, CrashAfterInvoke), store, retries=1)
    assert result.success, error_text(result)
    assert fake.invocations == 1
    meta = result.asset_materializations_for_node("scored")[0].metadata
    assert meta["reattached"].value is True and meta["job"].value == CrashAfterInvoke.crashed[0]


def test_find_job_rests_on_the_job_name_not_on_echoed_properties_or_list_order(
    fake: FakeAzureMLBatch, store: ObjectStore
) -> None:
    """The invocation names its job (azure-ai-ml's `invoke(job_name=...)`, body field `name`), so a
    lost submission is found with Jobs_Get. Nothing rests on the job keeping the invocation's own
    properties (the fake drops them, as nothing promises them) or on the listing's order."""

    b = backend(fake)
    request = WorkloadRequest(
        "score", f"run-{uuid.uuid4()}/scored/-/score", {"model": MODEL, "batch": BATCH}, {"predictions": OUT}
    )
    assert b.find_job(request) is None
    for _ in range(3):  # other jobs in the workspace
        materialize(backend(fake), store)
    job_id = b.submit(request, store, {})
    invoked = fake.jobs[job_id]
    assert fake.server.calls_to("invoke")[-1].body["properties"]["name"] == job_id
    arm_job = fake._job_resource(invoked)
    assert not any(k.startswith("dagster.") for k in arm_job["properties"]["properties"]), "no echo"
    other = backend(fake)
    before = len(fake.server.calls_to("jobs_list"))
    assert other.find_job(request) == job_id
    assert len(fake.server.calls_to("jobs_list")) == before, "found by name, not by listing"
    other_request = WorkloadRequest(
        "score", "another/scored/-/score", {"model": MODEL, "batch": BATCH}, {"predictions": OUT}
    )
    assert other.find_job(other_request) is None
    # The output folder follows from the job's name: a fresh process collects it without any echo.
    deadline = time.monotonic() + 20
    while not other.status(job_id).state.terminal and time.monotonic() < deadline:
        time.sleep(0.1)
    other.collect_outputs(job_id, request, store)
    assert store.exists(f"{OUT}/summary.json")
    # Job names are unique in a workspace: a second invocation with the same name is refused.
    from resources.azure.errors import PermanentAzureError
    from resources.azure.rest import AzureRest
    from tests.support.fakes.http import FakeCredential

    rest = AzureRest(
        FakeCredential(), "https://ml.azure.com/.default", service="test", allow_http_loopback=True
    )
    again = fake.server.calls_to("invoke")[-1].body
    again["properties"]["outputData"]["score"]["uri"] = (
        "azureml://datastores/mnist_blob/paths/_batch_outputs/new/"
    )
    with pytest.raises(PermanentAzureError, match=f"a job named {job_id} already exists"):
        rest.call("POST", fake.scoring_uri, json_body=again, what="invoke", retry=False)
    assert fake.invocations == 4


def test_a_service_that_ignores_the_job_name_fails_the_step_and_the_job_is_cancelled(
    fake: FakeAzureMLBatch, store: ObjectStore
) -> None:
    fake.honours_job_name = False
    result = materialize(backend(fake), store)
    assert not result.success
    assert "ignored the job name" in error_text(result)
    [job] = fake.jobs.values()
    assert job.job.state == "Canceled" and fake.invocations == 1


def test_real_sdk_invokes_polls_and_cancels_on_the_fake(
    fake: FakeAzureMLBatch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("azure.ai.ml", reason="azure-ai-ml is in the dev extra")
    from tests.support.azureml_sdk import sdk_invoke_poll_cancel

    statuses = sdk_invoke_poll_cancel(fake, tmp_path, monkeypatch)
    assert statuses["completed"] == "Completed"
    assert statuses["canceled"] == "Canceled"
    assert fake.invocations == 2


@pytest.mark.slow
def test_assets_materialize_end_to_end_on_azureml_fakes(
    store: ObjectStore, synthetic_source: Path, tmp_path: Path
) -> None:
    """raw -> model (v1 PipelineEndpoint) -> predictions (v2 batch endpoint): the real workload runs in the
    fakes on the datastore (Azurite), Pipes messages come back through the step's log."""
    from assets.model import TrainingConfig, mnist_model
    from assets.predictions import INFERENCE_BATCHES, mnist_predictions
    from assets.raw_mnist import raw_mnist
    from resources.compute.azureml import AzureMLPipelineBackend
    from resources.mnist_source import MnistSource
    from resources.prediction_checks import PredictionChecks
    from resources.quality import QualityGate
    from tests.support.fakes.azureml_v1 import FakeAzureMLPipelines
    from tests.support.synthetic import write_batch

    instance = dg.DagsterInstance.ephemeral()
    v1 = FakeAzureMLPipelines(store, mode="process").start()
    v2 = FakeAzureMLBatch(store, mode="process").start()
    try:
        common = {
            "subscription_id": v1.subscription,
            "resource_group": v1.resource_group,
            "workspace_name": v1.workspace,
            "datastore": v1.datastore,
            "allow_http_loopback": True,
            "credential": "python:tests.support.fakes.http:fake_credential",
            "poll_initial_seconds": 0.1,
            "poll_floor_seconds": 0.2,
            "poll_max_seconds": 0.5,
        }
        resources = {
            "storage": store,
            "training_compute": AzureMLPipelineBackend(
                **common, service_url=v1.url, pipeline_endpoint=v1.endpoint_name
            ),
            "scoring_compute": AzureMLBatchEndpointBackend(
                **common, arm_url=v2.url, endpoint_name=v2.endpoint_name
            ),
            # AzureML has no ingest: raw MNIST is fetched by the local backend, as in the default settings.
            "ingest_compute": LocalProcessBackend(work_dir=str(tmp_path / "compute")),
            "mnist_source": MnistSource(location=str(synthetic_source)),
            "quality": QualityGate(min_accuracy=0.8),
            "prediction_checks": PredictionChecks(),
        }
        config = dg.RunConfig(ops={"mnist_model": TrainingConfig(pca_components=20, kernel_components=200)})
        trained = dg.materialize(
            [raw_mnist, mnist_model], resources=resources, instance=instance, run_config=config
        )
        model_meta = trained.asset_materializations_for_node("mnist_model")[0].metadata
        assert model_meta["training"].value == "fresh"
        [run] = v1.runs.values()
        assert model_meta["azureml_run_id"].value == run.id
        assert float(model_meta["held_out_accuracy"].value) >= 0.8  # type: ignore[arg-type]
        messages = [e.user_message for e in instance.all_logs(trained.run_id)]
        # A workload log line that crossed as a Dagster Pipes message inside the step's stderr log.
        assert any(m.startswith("loaded 600 training and 200 held-out images") for m in messages)

        # The AzureML side: register and deploy the promoted model (deploy/azureml/deploy_batch.py).
        current = store.get_json("models/mnist/current.json")
        v2.deploy(current["model"])
        batch = write_batch(tmp_path / "b1", n=50)
        store.put_file("inference/b1/images.idx3-ubyte.gz", batch)
        store.put_bytes("inference/b1/_SUCCESS", b"")
        instance.add_dynamic_partitions(INFERENCE_BATCHES, ["b1"])
        scored = dg.materialize(
            [mnist_predictions], resources=resources, instance=instance, partition_key="b1"
        )
        meta = scored.asset_materializations_for_node("mnist_predictions")[0].metadata
        assert meta["images"].value == 50 and meta["scoring"].value == "fresh"
        assert meta["azureml_model"].value == "mnist:1"
        rows = store.get_bytes("predictions/b1/predictions.csv").decode().splitlines()
        assert rows[0] == "source_file,index,predicted_label,probability" and len(rows) == 51
        assert v1.submissions == 1 and v2.invocations == 1
    finally:
        v1.stop()
        v2.stop()
