"""A workload failure is the step's own failure on every Azure backend, in the same words as on the local
one: an input file that is not IDX fails the step with `WorkloadFailed` (a `dg.Failure`) whose first line
says which file, what was expected and what was found, with the facts as metadata.

Each backend runs the real workload on its contract fake (Azure Batch: the task's command; AzureML v1: the
published training step; AzureML v2: the deployment's scoring script), with Azurite as the storage.
"""

import uuid
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest

from resources.compute import ComputeBackend, WorkloadFailed, WorkloadRequest, idempotency_key
from resources.compute.azureml import AzureMLBatchEndpointBackend, AzureMLPipelineBackend
from resources.compute.batch_tasks import AzureBatchBackend
from resources.storage import AzureBlobObjectStore, ObjectStore
from tests.support.fakes.azure_batch import BatchFake
from tests.support.fakes.azureml_v1 import FakeAzureMLPipelines
from tests.support.fakes.azureml_v2 import FakeAzureMLBatch
from tests.support.remote import new_blob_store

pytestmark = pytest.mark.azurite

INSTANCE = dg.DagsterInstance.ephemeral()
NOT_IDX = b"these are not MNIST images"  # "thes" is read as the IDX magic number
MODEL = "models/mnist/m1/model"
BATCH = "inference/b1"
RAW = "raw/mnist/r1"
# The local backend's words for the same batch (tests/e2e/test_failure_messages.py).
SCORE_HEADLINE = (
    "notes.idx3-ubyte.gz: an input file is not an MNIST-shaped IDX file: expected an unsigned-byte IDX "
    "magic number (0x0000080N), found 0x74686573"
)
TRAIN_HEADLINE = SCORE_HEADLINE.replace("notes.idx3-ubyte.gz", "train-images-idx3-ubyte.gz")


@pytest.fixture(autouse=True)
def fast_pipes_close(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dagster waits 10 s after a Pipes session closes for late messages; 1 s is enough here."""
    import dagster._core.pipes.utils as pipes_utils

    monkeypatch.setattr(pipes_utils, "WAIT_FOR_LOGS_AFTER_EXECUTION_INTERVAL", 1)


@pytest.fixture
def store(azurite: dict[str, str]) -> AzureBlobObjectStore:
    """A bad batch, a raw set whose images file is not IDX, and a model the workload never gets to open
    (it checks every input file first)."""
    store = new_blob_store(azurite, prefix="f")
    store.put_bytes(f"{BATCH}/notes.idx3-ubyte.gz", NOT_IDX)
    store.put_bytes(f"{MODEL}/MLmodel", b"flavors: {}\n")
    store.put_bytes(f"{RAW}/train-images-idx3-ubyte.gz", NOT_IDX)
    store.put_bytes(f"{RAW}/train-labels-idx1-ubyte.gz", NOT_IDX)
    return store


def score_request(context: dg.AssetExecutionContext) -> WorkloadRequest:
    return WorkloadRequest(
        task="score",
        idempotency_key=idempotency_key(context, "score"),
        inputs={"model": MODEL, "batch": BATCH},
        outputs={"predictions": "predictions/b1"},
    )


def train_request(context: dg.AssetExecutionContext) -> WorkloadRequest:
    return WorkloadRequest(
        task="train",
        idempotency_key=idempotency_key(context, "train"),
        inputs={"raw": RAW},
        outputs={"model": "models/mnist/m2"},
        params={"pca_components": 20, "kernel_components": 200, "gamma_scale": 1.0, "C": 30.0, "seed": 0},
    )


def failure_of(compute: ComputeBackend, store: ObjectStore, task: str) -> tuple[str, dict[str, Any], str]:
    """(first line of the step's error, its failure metadata, the whole error) of a run of `task`."""

    @dg.asset
    def step(context: dg.AssetExecutionContext, compute: ComputeBackend, storage: ObjectStore) -> None:
        request = score_request(context) if task == "score" else train_request(context)
        compute.run(context, request, storage)

    result = dg.materialize(
        [step], resources={"compute": compute, "storage": store}, instance=INSTANCE, raise_on_error=False
    )
    assert not result.success
    [event] = result.get_step_failure_events()
    data = event.step_failure_data
    assert data.error is not None and data.error.cls_name == WorkloadFailed.__name__, data.error
    assert data.user_failure_data is not None and data.user_failure_data.description
    metadata = {k: getattr(v, "value", v) for k, v in data.user_failure_data.metadata.items()}
    return data.user_failure_data.description.splitlines()[0], metadata, data.error.to_string()


def check(headline: str, metadata: dict[str, Any], expected: str, file: str, backend: str, task: str) -> None:
    assert headline == expected, headline
    assert metadata["file"] == file and metadata["found"] == "0x74686573", metadata
    assert metadata["expected"] == "an unsigned-byte IDX magic number (0x0000080N)"
    assert metadata["backend"] == backend and metadata["task"] == task and metadata["job"], metadata


def test_azure_batch(tmp_path_factory: pytest.TempPathFactory, store: AzureBlobObjectStore) -> None:
    with BatchFake(tmp_path_factory.mktemp("batch"), time_scale=600.0) as fake:
        backend = AzureBatchBackend(
            account_url=fake.url, account_name=fake.account_name, account_key=fake.account_key,
            pool_id=f"f{uuid.uuid4().hex[:8]}", start_command="echo installing {requirements}",
            poll_initial_seconds=0.05, poll_max_seconds=0.2, pipes_interval_seconds=0.2,
            backoff_seconds=0.01, lro_polling_seconds=0,
        )  # fmt: skip
        headline, metadata, text = failure_of(backend, store, "score")
    check(headline, metadata, SCORE_HEADLINE, "notes.idx3-ubyte.gz", AzureBatchBackend.client_name, "score")
    assert "IdxFormatError" in text, "the workload's traceback is kept below the headline"


@pytest.fixture
def azureml_v1(store: ObjectStore) -> Iterator[FakeAzureMLPipelines]:
    fake = FakeAzureMLPipelines(store, allow_reuse=False).start()
    try:
        yield fake
    finally:
        fake.stop()


def test_azureml_v1_training_step(azureml_v1: FakeAzureMLPipelines, store: ObjectStore) -> None:
    fake = azureml_v1
    backend = AzureMLPipelineBackend(
        subscription_id=fake.subscription, resource_group=fake.resource_group, workspace_name=fake.workspace,
        datastore=fake.datastore, service_url=fake.url, allow_http_loopback=True,
        credential="python:tests.support.fakes.http:fake_credential", pipeline_endpoint=fake.endpoint_name,
        experiment_name="mnist-tests", poll_initial_seconds=0.05, poll_floor_seconds=0.1,
        poll_max_seconds=0.2, request_timeout_seconds=0.5,
    )  # fmt: skip
    headline, metadata, _ = failure_of(backend, store, "train")
    check(
        headline,
        metadata,
        TRAIN_HEADLINE,
        "train-images-idx3-ubyte.gz",
        AzureMLPipelineBackend.client_name,
        "train",
    )


@pytest.fixture
def azureml_v2(store: ObjectStore) -> Iterator[FakeAzureMLBatch]:
    fake = FakeAzureMLBatch(store).start()
    fake.deploy(MODEL)
    try:
        yield fake
    finally:
        fake.stop()


def test_azureml_v2_batch_endpoint(azureml_v2: FakeAzureMLBatch, store: ObjectStore) -> None:
    fake = azureml_v2
    backend = AzureMLBatchEndpointBackend(
        subscription_id=fake.subscription, resource_group=fake.resource_group, workspace_name=fake.workspace,
        datastore=fake.datastore, arm_url=fake.url, allow_http_loopback=True,
        credential="python:tests.support.fakes.http:fake_credential", endpoint_name=fake.endpoint_name,
        service_url=fake.url, poll_initial_seconds=0.05, poll_floor_seconds=0.1, poll_max_seconds=0.2,
        request_timeout_seconds=0.5,
    )  # fmt: skip
    headline, metadata, text = failure_of(backend, store, "score")
    check(
        headline,
        metadata,
        SCORE_HEADLINE,
        "notes.idx3-ubyte.gz",
        AzureMLBatchEndpointBackend.client_name,
        "score",
    )
    assert "IdxFormatError" in text, "the workload's traceback, read from the step's stderr log, is kept"
    assert "batchscoring" in text and "sig=" not in text, "the step's error, and no SAS token"
