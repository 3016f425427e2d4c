"""AzureML v2 training (a command job) against the stateful contract fake (+ Azurite as the datastore)."""

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


def test_success_submits_one_named_job_and_registers_the_model(fake: FakeAzureMLV2, store: ObjectStore) -> None:
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
