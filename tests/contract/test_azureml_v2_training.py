"""AzureML v2 training (a command job) against the stateful contract fake (+ Azurite as the datastore)."""

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
import pytest
from dagster._core.errors import DagsterExecutionInterruptedError

from resources.azure.errors import PermanentAzureError
from resources.azure.rest import ARM_SCOPE, AzureRest
from resources.compute import ComputeBackend, JobStatus, LocalProcessBackend, WorkloadRequest, idempotency_key
from resources.compute.azureml import AzureMLCommandJobBackend
from resources.storage import ObjectStore
from tests.support.fakes.azureml_v2_training import FakeAzureMLV2
from tests.support.fakes.http import FAULTS, FakeCredential
from tests.support.remote import error_text, interrupt_if_running, new_blob_store

pytestmark = pytest.mark.azurite

INSTANCE = dg.DagsterInstance.ephemeral()
RAW = "raw/mnist/r1"
MODEL = "models/mnist/m1"


@pytest.fixture
def store(azurite: dict[str, str]) -> ObjectStore:
    store = new_blob_store(azurite)
    store.put_bytes(f"{RAW}/_manifest.json", b"{}")
    return store


@pytest.fixture
def fake(store: ObjectStore) -> Iterator[FakeAzureMLV2]:
    fake = FakeAzureMLV2(store, mode="simulate").start()
    try:
        yield fake
    finally:
        fake.stop()


def backend(
    fake: FakeAzureMLV2, cls: type[AzureMLCommandJobBackend] = AzureMLCommandJobBackend, **kw: Any
) -> AzureMLCommandJobBackend:
    settings: dict[str, Any] = {
        "subscription_id": fake.subscription,
        "resource_group": fake.resource_group,
        "workspace_name": fake.workspace,
        "datastore": fake.datastore,
        "arm_url": fake.url,
        "service_url": fake.url,
        "compute_name": "cpu-cluster",
        "allow_http_loopback": True,
        "credential": "python:tests.support.fakes.http:fake_credential",
        "poll_initial_seconds": 0.05,
        "poll_floor_seconds": 0.1,
        "poll_max_seconds": 0.2,
        "request_timeout_seconds": 0.5,
        **kw,
    }
    return cls(**settings)


def make_asset(retries: int = 0) -> dg.AssetsDefinition:
    @dg.asset(retry_policy=dg.RetryPolicy(max_retries=retries) if retries else None)
    def trained(
        context: dg.AssetExecutionContext, compute: ComputeBackend, storage: ObjectStore
    ) -> dg.MaterializeResult:
        request = WorkloadRequest(
            task="train",
            idempotency_key=idempotency_key(context, "train"),
            inputs={"raw": RAW},
            outputs={"model": MODEL},
            params={"pca_components": 20},
        )
        result = compute.run(context, request, storage)
        return dg.MaterializeResult(
            metadata={"job": result.job_id, "reattached": result.reattached, **result.metadata}
        )

    return trained


def materialize(compute: ComputeBackend, store: ObjectStore, retries: int = 0) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [make_asset(retries)],
        resources={"compute": compute, "storage": store},
        instance=INSTANCE,
        raise_on_error=False,
    )


def test_success_submits_one_named_job_and_registers_the_model(
    fake: FakeAzureMLV2, store: ObjectStore
) -> None:
    result = materialize(backend(fake), store)
    assert result.success, error_text(result)
    [job] = fake.command_jobs.values()
    assert job.name.startswith("dagster-train-") and job.name.endswith("-1")
    props = job.properties
    assert props["computeId"].endswith("/computes/cpu-cluster")
    assert props["environmentId"].endswith("/environments/mnist-workload/versions/1")
    assert props["inputs"]["raw"] == {
        "jobInputType": "uri_folder",
        "uri": f"azureml://datastores/mnist_blob/paths/{RAW}/",
        "mode": "ReadOnlyMount",
    }
    assert props["outputs"]["model"]["mode"] == "ReadWriteMount"
    assert "DAGSTER_PIPES_CONTEXT" in props["environmentVariables"]
    assert store.exists(f"{MODEL}/metrics.json")
    assert fake.models[("mnist", "m1")] == f"azureml://datastores/mnist_blob/paths/{MODEL}/model"
    meta = result.asset_materializations_for_node("trained")[0].metadata
    assert meta["azureml_job"].value == job.name and meta["azureml_model"].value == "mnist:m1"
    assert f"ml.azure.com/runs/{job.name}" in str(meta["azureml_job_url"].value)
    logs = [e.user_message for e in INSTANCE.all_logs(result.run_id)]
    assert any(f"command job {job.name}: Completed" in m for m in logs)
    assert any("user_logs/std_log.txt: " in m and "simulated training" in m for m in logs)
    secrets = [m for m in logs if "sig=" in m or "fake-token" in m]
    assert not secrets, secrets


def test_remote_failure_shows_the_job_error_and_a_retry_submits_a_successor(
    fake: FakeAzureMLV2, store: ObjectStore
) -> None:
    fake.fail_next = "User process 'python' exited with status code 1"
    first = materialize(backend(fake), store)
    assert not first.success
    text = error_text(first)
    assert "is Failed: User process 'python' exited with status code 1" in text
    assert "Execution failed" in text, "the end of the job's std_log comes with the error"
    assert not store.exists(f"{MODEL}/metrics.json") and not fake.models

    # Re-executing the failed step (same idempotency key) submits attempt 2, never touching attempt 1.
    compute = backend(fake)
    key = "run-x/trained/-/train"
    request = WorkloadRequest("train", key, {"raw": RAW}, {"model": MODEL})
    fake.fail_next = "boom"
    failed = compute.submit(request, store, {})
    while not compute.status(failed).state.terminal:
        pass
    assert compute.find_job(request) == failed
    second = compute.submit(request, store, {})
    assert (failed[-2:], second[-2:]) == ("-1", "-2")
    assert compute.find_job(request) == second
    assert compute.submit(request, store, {}) == second, "a job still running or done gets no successor"


def test_a_job_failed_by_azureml_itself_is_retried_with_one_successor_and_a_user_error_is_not(
    fake: FakeAzureMLV2, store: ObjectStore
) -> None:
    """Run history's error code decides: SystemError (the service or the compute) lets the
    RetryPolicy retry the step, which submits exactly one successor (`-2`); UserError fails once."""
    fake.fail_next, fake.fail_next_code = "Node was preempted", "SystemError"
    before = set(fake.command_jobs)
    result = materialize(backend(fake), store, retries=2)
    assert result.success, error_text(result)
    names = sorted(set(fake.command_jobs) - before)
    assert [n[-2:] for n in names] == ["-1", "-2"], names
    assert (
        sum(
            e.dagster_event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
            for e in INSTANCE.all_logs(result.run_id)
        )
        == 1
    )

    fake.fail_next = "User process 'python' exited with status code 1"
    before = set(fake.command_jobs)
    failed = materialize(backend(fake), store, retries=2)
    assert not failed.success
    assert len(set(fake.command_jobs) - before) == 1
    assert not any(
        e.dagster_event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
        for e in INSTANCE.all_logs(failed.run_id)
    )


class InterruptedBackend(AzureMLCommandJobBackend):
    def wait(self, job_id: str, seconds: float) -> JobStatus:
        return interrupt_if_running(super().wait(job_id, seconds))


def test_cancel_from_dagster_cancels_the_command_job(fake: FakeAzureMLV2, store: ObjectStore) -> None:
    fake.run_s = 30
    fake.server.inject("cancel", "503")  # the cancellation is retried, and reaches the job once
    with pytest.raises(DagsterExecutionInterruptedError):
        dg.materialize(
            [make_asset()], resources={"compute": backend(fake, InterruptedBackend), "storage": store}
        )
    [job] = fake.command_jobs.values()
    assert job.job.state == "Canceled"
    assert len(fake.server.calls_to("cancel", ok_only=True)) == 1
    assert not store.exists(f"{MODEL}/metrics.json")


def test_a_store_or_workspace_the_job_cannot_use_is_refused_before_submitting(
    fake: FakeAzureMLV2, store: ObjectStore, tmp_path: Path
) -> None:
    from resources.storage import LocalObjectStore

    result = materialize(backend(fake), LocalObjectStore(root=str(tmp_path)))
    assert "needs MNIST_STORAGE=azure_blob" in error_text(result)
    result = materialize(backend(fake, service_url=None), store)
    assert "set the workspace region (MNIST_AZUREML_REGION)" in error_text(result)
    assert fake.submissions == 0


ROUTES = ("job_put", "job", "run_details", "std_log", "model_put")


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_at_every_call_still_one_job(fake: FakeAzureMLV2, store: ObjectStore, fault: str) -> None:
    for route in ROUTES:
        fake.server.inject(route, fault)
    result = materialize(backend(fake), store)
    assert result.success, error_text(result)
    assert fake.submissions == 1, "exactly one remote job per Dagster step"
    assert {c.route for c in fake.server.calls if c.fault == fault} == set(ROUTES)
    [job] = fake.command_jobs.values()
    # A lost PUT answer is sent again and meets the job it created: an update, not a second job.
    assert job.puts == (2 if fault == "timeout" else 1)
    assert ("mnist", "m1") in fake.models


class CrashAfterSubmit(AzureMLCommandJobBackend):
    crashed: ClassVar[list[str]] = []

    def submit(self, request: WorkloadRequest, store: ObjectStore, env: Any) -> str:
        job_id = super().submit(request, store, env)
        if not self.crashed:
            self.crashed.append(job_id)
            raise RuntimeError("step process lost")
        return job_id


def test_retried_step_reattaches_by_job_name(fake: FakeAzureMLV2, store: ObjectStore) -> None:
    CrashAfterSubmit.crashed.clear()
    result = materialize(backend(fake, CrashAfterSubmit), store, retries=1)
    assert result.success, error_text(result)
    assert fake.submissions == 1
    meta = result.asset_materializations_for_node("trained")[0].metadata
    assert meta["reattached"].value is True and meta["job"].value == CrashAfterSubmit.crashed[0]


def _rest() -> AzureRest:
    return AzureRest(FakeCredential(), ARM_SCOPE, service="test", allow_http_loopback=True, retry_total=0)


def test_the_fake_keeps_the_jobs_contract(fake: FakeAzureMLV2, store: ObjectStore) -> None:
    compute = backend(fake)
    request = WorkloadRequest("train", "run-y/trained/-/train", {"raw": RAW}, {"model": MODEL})
    code = compute._upload_workload(store)
    body = {"properties": compute._command_job(request, code, {"A": "1"})}
    url = f"{fake.url}{compute.workspace_path}/jobs/j1?api-version=2023-10-01"
    rest = _rest()
    assert rest.call("PUT", url, json_body=body, what="create").status == 201
    body["properties"]["tags"] = {"note": "tags may change"}
    assert rest.call("PUT", url, json_body=body, what="update").status == 200
    assert fake.submissions == 1 and fake.command_jobs["j1"].properties["tags"] == {"note": "tags may change"}
    refused = {
        "a create-only property changed": {**body["properties"], "command": "python -c pass"},
        "a property the spec does not define": {**body["properties"], "codeUri": "x"},
        "a read-only property": {**body["properties"], "status": "Completed"},
        "an input type not served": {
            **body["properties"],
            "inputs": {"raw": {"jobInputType": "literal", "value": "1"}},
        },
        "an undefined input in the command": {**body["properties"], "command": "echo ${{inputs.nope}}"},
        "an unknown compute": {**body["properties"], "computeId": "/elsewhere/computes/gpu"},
        "another job type": {**body["properties"], "jobType": "Pipeline"},
    }
    for why, props in refused.items():
        name = "j1" if why == "a create-only property changed" else "j2"
        with pytest.raises(PermanentAzureError) as err:
            rest.call("PUT", url.replace("/j1?", f"/{name}?"), json_body={"properties": props}, what=why)
        assert err.value.status == 400, why
    assert fake.submissions == 1
    model_url = f"{fake.url}{compute.workspace_path}/models/mnist/versions/m9?api-version=2023-10-01"
    no_model = {
        "properties": {"modelType": "mlflow_model", "modelUri": "azureml://datastores/mnist_blob/paths/x"}
    }
    with pytest.raises(PermanentAzureError, match="not an MLflow model folder"):
        rest.call("PUT", model_url, json_body=no_model, what="register")


def test_settings_choose_the_command_job_for_training() -> None:
    from orchestration.settings.aggregate import Settings
    from orchestration.settings.wiring import compute_backend

    env = {
        "MNIST_STORAGE": "azure_blob",
        "AZURE_STORAGE_ACCOUNT_URL": "https://acct.blob.core.windows.net",
        "MNIST_COMPUTE": "azureml",
        "MNIST_AZUREML_SUBSCRIPTION": "s",
        "MNIST_AZUREML_RESOURCE_GROUP": "rg",
        "MNIST_AZUREML_WORKSPACE": "ws",
        "MNIST_AZUREML_REGION": "westeurope",
        "MNIST_AZUREML_TRAINING": "command_job",
        "MNIST_AZUREML_COMPUTE_CLUSTER": "cpu-cluster",
        "MNIST_AZUREML_TRAINING_ENVIRONMENT": "mnist-workload:3",
    }
    settings = Settings.from_env(env)
    training = compute_backend(settings, "training")
    assert isinstance(training, AzureMLCommandJobBackend)
    assert (training.compute_name, training.environment, training.model_name) == (
        "cpu-cluster",
        "mnist-workload:3",
        "mnist",
    )
    with pytest.raises(Exception, match="MNIST_AZUREML_COMPUTE_CLUSTER"):
        Settings.from_env({k: v for k, v in env.items() if k != "MNIST_AZUREML_COMPUTE_CLUSTER"})


def test_real_sdk_creates_gets_and_cancels_a_command_job_on_the_fake(
    fake: FakeAzureMLV2, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """azure-ai-ml's jobs.create_or_update (twice: the second is the update the service documents), jobs.get
    and jobs.begin_cancel, as a v2 SDK user drives them."""
    pytest.importorskip("azure.ai.ml", reason="azure-ai-ml is in the dev extra")
    from azure.ai.ml import Input, MLClient, Output, command  # noqa: TID251 (the real SDK drives the fake)
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    class AllowHttp(SansIOHTTPPolicy):  # type: ignore[type-arg]
        def on_request(self, request: Any) -> None:
            request.context["enforce_https"] = False

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AZUREML_DEV_URL_MFE", fake.url)
    ml = MLClient(
        FakeCredential(),  # type: ignore[arg-type]
        fake.subscription,
        fake.resource_group,
        fake.workspace,
        per_call_policies=[AllowHttp()],
    )
    store_path = f"azureml://datastores/{fake.datastore}/paths"

    def status(name: str) -> str:
        value = ml.jobs.get(name).status
        return str(getattr(value, "value", value))

    def job(name: str) -> Any:
        return command(
            name=name,
            command="python -m workload train --input raw=${{inputs.raw}} --output model=${{outputs.model}}",
            inputs={"raw": Input(type="uri_folder", path=f"{store_path}/{RAW}/")},
            outputs={
                "model": Output(type="uri_folder", path=f"{store_path}/models/mnist/{name}/", mode="rw_mount")
            },
            environment="azureml:mnist-workload:1",
            compute="cpu-cluster",
            experiment_name="mnist-training",
            environment_variables={"DAGSTER_PIPES_CONTEXT": "e30="},
            tags={"dagster.key_digest": "abc"},
        )

    created = ml.jobs.create_or_update(job("sdk-1"))
    assert created.name == "sdk-1"
    again = ml.jobs.create_or_update(job("sdk-1"))
    assert again.name == "sdk-1" and fake.submissions == 1 and fake.command_jobs["sdk-1"].puts == 2
    deadline = time.monotonic() + 20
    while status("sdk-1") not in ("Completed", "Failed") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status("sdk-1") == "Completed"
    fake.run_s = 30
    ml.jobs.create_or_update(job("sdk-2"))
    ml.jobs.begin_cancel("sdk-2").result(timeout=10)
    assert status("sdk-2") == "Canceled"
    assert fake.command_jobs["sdk-2"].job.state == "Canceled" and fake.submissions == 2


@pytest.mark.slow
def test_mnist_model_trains_as_a_command_job_and_the_batch_endpoint_serves_it(
    store: ObjectStore, synthetic_source: Path, tmp_path: Path
) -> None:
    """raw -> mnist_model (v2 command job) -> the registered model deployed -> predictions (v2 batch endpoint):
    the real workload runs in the fake from the package uploaded to the datastore (Azurite), and its Pipes
    messages come back through the job's std_log."""
    from assets.model import TrainingConfig, mnist_model
    from assets.predictions import INFERENCE_BATCHES, mnist_predictions
    from assets.raw_mnist import raw_mnist
    from resources.compute.azureml import AzureMLBatchEndpointBackend
    from resources.mnist_source import MnistSource
    from resources.prediction_checks import PredictionChecks
    from resources.quality import QualityGate
    from tests.support.synthetic import write_batch

    instance = dg.DagsterInstance.ephemeral()
    fake = FakeAzureMLV2(store, mode="process").start()
    try:
        training = backend(fake, poll_initial_seconds=0.1, poll_floor_seconds=0.2, poll_max_seconds=0.5)
        resources = {
            "storage": store,
            "training_compute": training,
            "scoring_compute": AzureMLBatchEndpointBackend(
                subscription_id=fake.subscription,
                resource_group=fake.resource_group,
                workspace_name=fake.workspace,
                datastore=fake.datastore,
                arm_url=fake.url,
                allow_http_loopback=True,
                credential="python:tests.support.fakes.http:fake_credential",
                endpoint_name=fake.endpoint_name,
                poll_initial_seconds=0.1,
                poll_floor_seconds=0.2,
                poll_max_seconds=0.5,
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
        assert trained.success
        meta = trained.asset_materializations_for_node("mnist_model")[0].metadata
        assert meta["training"].value == "fresh"
        [job] = fake.command_jobs.values()
        assert meta["azureml_job"].value == job.name and job.job.state == "Finished"
        assert float(meta["held_out_accuracy"].value) >= 0.8  # type: ignore[arg-type]
        messages = [e.user_message for e in instance.all_logs(trained.run_id)]
        # A workload log line that crossed as a Dagster Pipes message inside the job's std_log.
        assert any(m.startswith("loaded 600 training and 200 held-out images") for m in messages)

        # The registered version is the promoted model folder: deploy it and score a batch with it.
        current = store.get_json("models/mnist/current.json")
        [(name, version)] = fake.models
        assert meta["azureml_model"].value == f"{name}:{version}"
        assert (
            fake.models[(name, version)] == f"azureml://datastores/{fake.datastore}/paths/{current['model']}"
        )
        fake.deployments["blue"] = (name, version)
        fake.default_deployment = "blue"
        batch = write_batch(tmp_path / "b1", n=50)
        store.put_file("inference/b1/images.idx3-ubyte.gz", batch)
        store.put_bytes("inference/b1/_SUCCESS", b"")
        instance.add_dynamic_partitions(INFERENCE_BATCHES, ["b1"])
        scored = dg.materialize(
            [mnist_predictions], resources=resources, instance=instance, partition_key="b1"
        )
        assert scored.success
        scored_meta = scored.asset_materializations_for_node("mnist_predictions")[0].metadata
        assert scored_meta["images"].value == 50 and scored_meta["azureml_model"].value == f"{name}:{version}"
        assert fake.submissions == 1 and fake.invocations == 1
    finally:
        fake.stop()
