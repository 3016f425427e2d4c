"""AzureML v1 PipelineEndpoint training backend against the stateful contract fake (+ Azurite as datastore).

The fake follows the pipelines service contract (aeva models) and validates its run-history answers
against the official spec; the same fake is also driven by the real azureml-pipeline-core SDK below.
"""

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
import pytest
from dagster._core.errors import DagsterExecutionInterruptedError

from resources.compute import ComputeBackend, JobStatus, WorkloadRequest, idempotency_key
from resources.compute.azureml import AzureMLPipelineBackend
from resources.storage import ObjectStore
from tests.support.fakes.azureml_v1 import FakeAzureMLPipelines, azureml_argument
from tests.support.fakes.http import FAULTS
from tests.support.remote import error_text, interrupt_if_running, new_blob_store

pytestmark = pytest.mark.azurite

INSTANCE = dg.DagsterInstance.ephemeral()
RAW = "raw/mnist/r1"
OUT = "models/mnist/m1"
HYPER = {"pca_components": 20, "kernel_components": 200, "gamma_scale": 1.0, "C": 30.0, "seed": 0}


@pytest.fixture
def store(azurite: dict[str, str]) -> ObjectStore:
    store = new_blob_store(azurite)
    store.put_bytes(f"{RAW}/train-images-idx3-ubyte.gz", b"not used by the simulated step")
    return store


@pytest.fixture
def fake(store: ObjectStore) -> Iterator[FakeAzureMLPipelines]:
    fake = FakeAzureMLPipelines(store, mode="simulate", allow_reuse=False).start()
    try:
        yield fake
    finally:
        fake.stop()


def backend(
    fake: FakeAzureMLPipelines, cls: type[AzureMLPipelineBackend] = AzureMLPipelineBackend, **kw: Any
) -> AzureMLPipelineBackend:
    settings: dict[str, Any] = {
        "subscription_id": fake.subscription,
        "resource_group": fake.resource_group,
        "workspace_name": fake.workspace,
        "datastore": fake.datastore,
        "service_url": fake.url,
        "allow_http_loopback": True,
        "credential": "python:tests.support.fakes.http:fake_credential",
        "pipeline_endpoint": fake.endpoint_name,
        "experiment_name": "mnist-tests",
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
            outputs={"model": OUT},
            params=HYPER,
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


def logs(result: dg.ExecuteInProcessResult) -> list[str]:
    return [e.user_message for e in INSTANCE.all_logs(result.run_id)]


def test_success_submits_once_streams_steps_and_records_metadata(
    fake: FakeAzureMLPipelines, store: ObjectStore
) -> None:
    result = materialize(backend(fake), store)
    assert result.success, error_text(result)
    assert fake.submissions == 1
    [run] = fake.runs.values()
    # What went over the wire: string parameters and a DataPath assignment for the input only.
    assert run.submission["ParameterAssignments"]["pca_components"] == "20"
    assert run.submission["DataPathAssignments"] == {
        "raw_data": {"DataStoreName": "mnist_blob", "RelativePath": RAW}
    }, "the model folder is the step's output binding, not a (read-only) DataPath input"
    assert run.submission["Properties"]["dagster.idempotency_key"].endswith("/trained/-/train")
    meta = result.asset_materializations_for_node("trained")[0].metadata
    assert meta["azureml_run_id"].value == run.id
    assert run.id in str(meta["azureml_run_url"].value) and "ml.azure.com" in str(
        meta["azureml_run_url"].value
    )
    assert meta["azureml_pipeline_version"].value == "0"
    assert "training" not in meta, "fresh training is not reported as reused"
    text = "\n".join(logs(result))
    assert "step train: Running" in text and "step train: Completed" in text
    assert "train/azureml-logs/70_driver_log.txt: Starting the training step" in text
    # AzureML uploaded the step's output under its step run id; the backend copied it into the model folder.
    assert store.exists(f"_azureml_outputs/{run.step_id}/model_output/metrics.json")
    assert store.get_bytes(f"{OUT}/model/model.pkl") == b"fake" and store.exists(f"{OUT}/metrics.json")


def test_the_fake_mounts_inputs_read_only(fake: FakeAzureMLPipelines, tmp_path: Path) -> None:
    """A step that writes into an input mount fails, as on AzureML's read-only input mounts."""
    import sys
    import time

    from tests.support.fakes.jobs import Mount, SimJob

    local = tmp_path / "raw"
    write = "import sys, pathlib; pathlib.Path(sys.argv[1], 'model.pkl').write_bytes(b'x')"
    job = fake.runner.add(
        SimJob(
            id="writes-input",
            created=fake.clock.now(),
            queue_s=0,
            run_s=0,
            command=[sys.executable, "-c", write, str(local)],
            mounts=[Mount(RAW, local, output=False)],
        )
    )
    deadline = time.monotonic() + 20
    while not job.terminal and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.state == "Failed" and "Read-only file system" in str(job.error)


def test_pinned_version_and_unknown_version(fake: FakeAzureMLPipelines, store: ObjectStore) -> None:
    fake.publish()  # version 1 becomes the default
    assert materialize(backend(fake, pipeline_version="0"), store).success
    assert next(iter(fake.runs.values())).pipeline_id == fake.versions["0"]
    by_id = materialize(backend(fake, pipeline_endpoint=None, pipeline_endpoint_id=fake.endpoint_id), store)
    assert by_id.success and list(fake.runs.values())[-1].pipeline_id == fake.versions["1"], (
        "the default version"
    )
    bad = materialize(backend(fake, pipeline_version="7"), store)
    assert not bad.success
    assert "has no version '7'; it has 0, 1 (default 1)" in error_text(bad)
    assert fake.submissions == 2


def test_permanent_errors_fail_at_once_with_what_to_fix(
    fake: FakeAzureMLPipelines, store: ObjectStore
) -> None:
    result = materialize(backend(fake, pipeline_endpoint="nope"), store)
    text = error_text(result)
    assert "pipeline endpoint 'nope': 404 not found" in text and "MNIST_AZUREML_PIPELINE_ENDPOINT" in text
    denied = materialize(
        backend(fake, credential="python:tests.contract.test_azureml_v1:wrong_credential"), store
    )
    text = error_text(denied)
    assert "401 the credential was rejected" in text and "AZURE_CLIENT_SECRET" in text
    assert "not-the-token" not in text and "fake-token" not in text
    assert len([c for c in fake.server.calls if c.status == 401]) == 1, "permanent errors are not retried"
    assert len(fake.server.calls_to("endpoint_by_name")) == 1
    assert fake.submissions == 0


def wrong_credential() -> Any:
    from azure.core.credentials import AccessToken

    class Wrong:
        def get_token(self, *scopes: str, **kw: Any) -> AccessToken:
            return AccessToken("not-the-token", 2**31)

    return Wrong()


def test_remote_failure_surfaces_the_step_error(fake: FakeAzureMLPipelines, store: ObjectStore) -> None:
    fake.fail_next = "ValueError: images.idx3-ubyte.gz is not an IDX file"
    result = materialize(backend(fake), store)
    assert not result.success
    text = error_text(result)
    assert "ended failed" in text and "is not an IDX file" in text and "ml.azure.com/runs/" in text
    assert not store.exists(f"{OUT}/metrics.json")


class InterruptedBackend(AzureMLPipelineBackend):
    """The Dagster run is terminated while the AzureML run is running."""

    def wait(self, job_id: str, seconds: float) -> JobStatus:
        return interrupt_if_running(super().wait(job_id, seconds))


def test_cancel_from_dagster_cancels_the_azureml_run(fake: FakeAzureMLPipelines, store: ObjectStore) -> None:
    fake.run_s = 30
    with pytest.raises(DagsterExecutionInterruptedError):
        dg.materialize(
            [make_asset()], resources={"compute": backend(fake, InterruptedBackend), "storage": store}
        )
    [run] = fake.runs.values()
    assert run.job.state == "Canceled"
    assert len(fake.server.calls_to("cancel", ok_only=True)) == 1
    assert not store.exists(f"{OUT}/metrics.json")


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_at_every_call_still_one_submission(
    fake: FakeAzureMLPipelines, store: ObjectStore, fault: str
) -> None:
    for route in (
        "endpoint_by_name",
        "submit",
        "runs_query",
        "run_status",
        "children",
        "details",
        "log_file",
    ):
        fake.server.inject(route, fault)
    result = materialize(backend(fake), store)
    assert result.success, error_text(result)
    assert fake.submissions == 1, "exactly one remote submission per Dagster step"
    assert {c.route for c in fake.server.calls if c.fault == fault} >= {
        "endpoint_by_name",
        "submit",
        "run_status",
    }
    assert store.exists(f"{OUT}/metrics.json")


class CrashAfterSubmit(AzureMLPipelineBackend):
    """The step process dies right after the POST reached AzureML, before Dagster recorded the launch."""

    crashed: ClassVar[list[str]] = []

    def submit(self, request: WorkloadRequest, store: ObjectStore, env: Any) -> str:
        job_id = super().submit(request, store, env)
        if not self.crashed:
            self.crashed.append(job_id)
            raise RuntimeError("step process lost")
        return job_id


class CrashWhileFollowing(AzureMLPipelineBackend):
    crashed: ClassVar[list[str]] = []

    def _follow(self, context: dg.AssetExecutionContext, job_id: str) -> JobStatus:
        if not self.crashed:
            self.crashed.append(job_id)
            raise RuntimeError("step process lost")
        return super()._follow(context, job_id)


@pytest.mark.parametrize("cls", [CrashWhileFollowing, CrashAfterSubmit])
def test_retried_step_reattaches(
    fake: FakeAzureMLPipelines, store: ObjectStore, cls: type[AzureMLPipelineBackend]
) -> None:
    cls.crashed.clear()  # type: ignore[attr-defined]
    fake.run_s = 1.0
    result = materialize(backend(fake, cls), store, retries=1)
    assert result.success, error_text(result)
    assert fake.submissions == 1, "the retry found the AzureML run (launch record or run-history lookup)"
    meta = result.asset_materializations_for_node("trained")[0].metadata
    assert meta["reattached"].value is True
    assert meta["job"].value == cls.crashed[0]  # type: ignore[attr-defined]


def test_find_job_by_idempotency_key_in_run_history(fake: FakeAzureMLPipelines, store: ObjectStore) -> None:
    b = backend(fake)
    request = WorkloadRequest(
        "train", f"run-{uuid.uuid4()}/trained/-/train", {"raw": RAW}, {"model": OUT}, HYPER
    )
    assert b.find_job(request) is None  # no such experiment yet
    job_id = b.submit(request, store, {})
    other = backend(fake)  # a fresh process: nothing cached
    assert other.find_job(request) == job_id
    other_key = WorkloadRequest("train", "another/trained/-/train", {"raw": RAW}, {"model": OUT}, HYPER)
    assert other.find_job(other_key) is None
    assert (
        fake.server.calls_to("runs_query")[-2].body["filter"]
        == f'((Properties/dagster.key_digest eq "{request.key_digest}") and (ParentRunId eq null))'
    ), "the form azureml-core's OData helpers write (double-quoted literal)"


def test_run_history_refuses_a_filter_the_sdk_never_sends(fake: FakeAzureMLPipelines) -> None:
    import httpx

    from tests.support.fakes.http import token_for

    fake.experiments.add("mnist-tests")
    url = f"{fake.url}/history/v1.0{workspace_path(fake)}/experiments/mnist-tests/runs:query"
    headers = {"Authorization": f"Bearer {token_for('https://management.core.windows.net/')}"}
    for bad in ("(Properties/dagster.key_digest eq 'abc')", 'Properties/dagster.key_digest eq "abc"'):
        answer = httpx.post(url, json={"filter": bad}, headers=headers)
        assert answer.status_code == 400, bad
    good = httpx.post(url, json={"filter": '(Properties/dagster.key_digest eq "abc")'}, headers=headers)
    assert good.status_code == 200 and good.json() == {"value": []}


def workspace_path(fake: FakeAzureMLPipelines) -> str:
    return (
        f"/subscriptions/{fake.subscription}/resourceGroups/{fake.resource_group}"
        f"/providers/Microsoft.MachineLearningServices/workspaces/{fake.workspace}"
    )


def test_reused_step_is_never_reported_as_fresh_training(store: ObjectStore) -> None:
    fake = FakeAzureMLPipelines(store, mode="simulate", allow_reuse=True).start()
    try:
        # Without the Pipes parameter, identical parameters and DataPaths let AzureML reuse the step.
        first = materialize(backend(fake, pipes=False), store)
        assert (
            first.success and "training" not in first.asset_materializations_for_node("trained")[0].metadata
        )
        second = materialize(backend(fake, pipes=False), store)
        assert second.success, error_text(second)
        meta = second.asset_materializations_for_node("trained")[0].metadata
        assert str(meta["training"].value).startswith("reused by AzureML (allow_reuse)")
        assert (
            json.loads(json.dumps(meta["azureml_reused_steps"].value))["train"]
            == next(iter(fake.runs.values())).step_id
        )
        assert any("reused AzureML run" in m for m in logs(second))
        assert fake.runner.executions == 1, "the reused run did no work"
        # The reused run's outputs are the first run's, copied into the model folder.
        first_step = next(iter(fake.runs.values())).step_id
        assert store.exists(f"{OUT}/metrics.json")
        # A reused step whose outputs are gone is a failure that says why.
        store.delete(f"_azureml_outputs/{first_step}/model_output/metrics.json")
        third = materialize(backend(fake, pipes=False), store)
        assert not third.success
        assert f"reused step run {first_step}" in error_text(third) and "allow_reuse=False" in error_text(
            third
        )
    finally:
        fake.stop()


def test_real_sdk_submits_to_the_fake(
    fake: FakeAzureMLPipelines, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("azureml.pipeline.core", reason="azureml-pipeline-core is in the dev extra")
    from tests.support.azureml_sdk import sdk_submit_and_wait

    run_id, status, pipeline_version = sdk_submit_and_wait(fake, tmp_path, monkeypatch)
    assert status == "Finished"
    assert fake.runs[run_id].pipeline_id == fake.versions[pipeline_version]
    assert fake.submissions == 2  # one through the endpoint, one to the published pipeline directly


def test_published_pipeline_interface_matches_what_the_backend_submits() -> None:
    import argparse

    from deploy.azureml.publish_pipeline import plan

    published = plan(
        argparse.Namespace(
            subscription="s",
            resource_group="r",
            workspace="w",
            endpoint="e",
            datastore="d",
            compute="c",
            allow_reuse=False,
        )
    )
    b = AzureMLPipelineBackend(subscription_id="s", resource_group="r", workspace_name="w")
    assert set(b.datapath_parameters.values()) == set(published["datapath_parameters"])
    assert set(b.output_bindings.values()) == set(published["outputs"])
    assert published["outputs"]["model_output"] == f"d/{b.output_destination}"
    assert set(HYPER) | {"dagster_pipes"} == set(published["parameters"])
    assert published["allow_reuse"] is False


def test_settings_choose_the_azureml_backends_with_secrets_as_env_vars() -> None:
    from orchestration.settings import Settings, SettingsError
    from resources.compute.azureml import AzureMLBatchEndpointBackend

    env = {
        "MNIST_COMPUTE": "azureml",
        "MNIST_AZUREML_SUBSCRIPTION": "sub",
        "MNIST_AZUREML_RESOURCE_GROUP": "rg",
        "MNIST_AZUREML_WORKSPACE": "ws",
        "MNIST_AZUREML_REGION": "westeurope",
        "MNIST_AZUREML_PIPELINE_VERSION": "3",
        "MNIST_AZUREML_BATCH_DEPLOYMENT": "green",
        "MNIST_AZUREML_POLL_MAX": "20",
        "AZURE_TENANT_ID": "t",
        "AZURE_CLIENT_ID": "c",
        "AZURE_CLIENT_SECRET": "s3cret",
    }
    settings = Settings.from_env(env)
    training = settings.compute_backend("training")
    scoring = settings.compute_backend("scoring")
    assert isinstance(training, AzureMLPipelineBackend) and isinstance(scoring, AzureMLBatchEndpointBackend)
    assert (training.pipeline_endpoint, training.pipeline_version, training.poll_max_seconds) == (
        "mnist-training",
        "3",
        20.0,
    )
    assert scoring.deployment_name == "green"
    assert isinstance(training.client_secret, dg.EnvVar), "the secret stays a reference to the variable"
    assert "s3cret" not in repr(settings) and "s3cret" not in repr(training)
    with pytest.raises(SettingsError, match="MNIST_AZUREML_WORKSPACE"):
        Settings.from_env({k: v for k, v in env.items() if k != "MNIST_AZUREML_WORKSPACE"})
    local_scoring = Settings.from_env({**env, "MNIST_SCORING_COMPUTE": "local"})
    assert not isinstance(local_scoring.compute_backend("scoring"), AzureMLBatchEndpointBackend)


def test_pipes_bootstrap_survives_azureml_argument_rewriting(
    fake: FakeAzureMLPipelines, store: ObjectStore
) -> None:
    """AzureML backslash-escapes semicolons in step arguments (the fake does too): the bootstrap the
    step decodes must be exactly the one Dagster sent, whatever characters it holds."""
    from deploy.azureml.train_step import pipes_env

    env = {
        "DAGSTER_PIPES_CONTEXT": "eJyrVkrOz0vOz0nVS87PVbJSUEpJLU4uyswvyczPs1IqSs0rzs9NTclUcE7MTVWqBQCk2Q0p",
        "DAGSTER_PIPES_MESSAGES": '{"path": "/mnt/a;b c", "note": "x\\\\;y \\"quoted\\""}',
    }
    request = WorkloadRequest(
        "train", f"run-{uuid.uuid4()}/trained/-/train", {"raw": RAW}, {"model": OUT}, HYPER
    )
    job_id = backend(fake).submit(request, store, env)
    argv = fake.runs[job_id].argv
    sent = argv[argv.index("--dagster-pipes") + 1]
    assert pipes_env(sent) == env
    # An argument that was rewritten on the way is refused, saying so, without echoing it.
    with pytest.raises(ValueError, match="rewritten on the way") as refused:
        pipes_env(azureml_argument(sent + ";"))
    assert sent not in str(refused.value)
