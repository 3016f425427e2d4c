"""The Azure Batch compute backend, driven through the real azure-batch SDK against the contract fake + Azurite.

The fake checks shared-key signatures and request bodies against the official spec, and really runs each
task's command locally with its resource files downloaded from Azurite and its output files uploaded back.
"""

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.errors import DagsterExecutionInterruptedError

from resources.compute import ComputeBackend, JobState, JobStatus, WorkloadRequest, idempotency_key
from resources.compute.batch_tasks import AzureBatchBackend, AzureBatchError
from resources.compute.batch_tasks.backend import SUBMIT_FAILED_REASON
from resources.storage import AzureBlobObjectStore
from tests.support.fakes.azure_batch import BatchFake
from tests.support.remote import error_text as failure_text
from tests.support.remote import new_blob_store

pytestmark = pytest.mark.azurite

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SLEEPY = PROJECT_ROOT / "tests" / "support" / "batchy"
INSTANCE = dg.DagsterInstance.ephemeral()


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BatchFake]:
    # 600 simulated seconds per real second: a 60 s pool resize takes 0.1 s.
    with BatchFake(tmp_path_factory.mktemp("batch"), time_scale=600.0) as fake:
        yield fake


@pytest.fixture(autouse=True)
def fast_pipes_close(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dagster waits 10 s after a Pipes session closes for late messages; a killed or never-started task
    (cancel, start task failure) sends none, so the tests wait 1 s instead."""
    import dagster._core.pipes.utils as pipes_utils

    monkeypatch.setattr(pipes_utils, "WAIT_FOR_LOGS_AFTER_EXECUTION_INTERVAL", 1)


@pytest.fixture
def store(azurite: dict[str, str]) -> AzureBlobObjectStore:
    return new_blob_store(azurite, prefix="b")


def make_backend(
    fake: BatchFake, cls: type[AzureBatchBackend] = AzureBatchBackend, **overrides: Any
) -> AzureBatchBackend:
    settings: dict[str, Any] = {
        "account_url": fake.url,
        "account_name": fake.account_name,
        "account_key": fake.account_key,
        "pool_id": f"p{uuid.uuid4().hex[:8]}",
        "package_dir": str(SLEEPY),
        # The real start command resolves the requirements with pip (a few seconds); the e2e test runs it.
        "start_command": "echo installing {requirements}",
        "poll_initial_seconds": 0.05,
        "poll_max_seconds": 0.2,
        "pipes_interval_seconds": 0.2,
        "backoff_seconds": 0.01,
        "backoff_max_seconds": 0.05,
        "lro_polling_seconds": 0,
        "request_timeout_seconds": 2.0,
        "pool_delete_wait_seconds": 20.0,
        **overrides,
    }
    return cls(**settings)


def make_asset(params: dict[str, Any], retries: int = 0) -> dg.AssetsDefinition:
    @dg.asset(retry_policy=dg.RetryPolicy(max_retries=retries) if retries else None)
    def remote_thing(
        context: dg.AssetExecutionContext, compute: ComputeBackend, storage: AzureBlobObjectStore
    ) -> dg.MaterializeResult:
        request = WorkloadRequest(
            task="work",
            idempotency_key=idempotency_key(context, "work"),
            inputs={"data": "inputs/x"},
            outputs={"out": "results/x"},
            params=params,
        )
        result = compute.run(context, request, storage)
        return dg.MaterializeResult(metadata={"job": result.job_id, "reattached": result.reattached})

    return remote_thing


def run(
    backend: AzureBatchBackend, store: AzureBlobObjectStore, params: dict[str, Any], retries: int = 0
) -> dg.ExecuteInProcessResult:
    store.put_bytes("inputs/x/data.txt", b"input")
    return dg.materialize(
        [make_asset(params, retries)],
        resources={"compute": backend, "storage": store},
        raise_on_error=False,
        instance=INSTANCE,
    )


def log_lines(result: dg.ExecuteInProcessResult) -> list[str]:
    return [e.user_message for e in INSTANCE.all_logs(result.run_id)]


def launches(ledger: Path) -> int:
    return len(ledger.read_text().splitlines()) if ledger.exists() else 0


def job_of(result: dg.ExecuteInProcessResult) -> str:
    mat = result.asset_materializations_for_node("remote_thing")[0]
    return str(mat.metadata["job"].value)


class CrashOnceBackend(AzureBatchBackend):
    """Dies (like a killed step process) right after the first submission, leaving the task running."""

    def _follow(self, context: dg.AssetExecutionContext, job_id: str) -> JobStatus:
        if not CRASHES:
            CRASHES.append(job_id)
            raise RuntimeError("step process lost")
        return super()._follow(context, job_id)


CRASHES: list[str] = []


class InterruptedBackend(AzureBatchBackend):
    """The Dagster run is terminated while the task runs."""

    def wait(self, job_id: str, seconds: float) -> JobStatus:
        status = super().wait(job_id, seconds)
        if status.state is JobState.RUNNING and self.new_log_lines_seen(job_id):
            raise DagsterExecutionInterruptedError()
        return status

    def new_log_lines_seen(self, job_id: str) -> bool:
        return self._log_offsets.get(job_id, {}).get("stdout", 0) > 0


def test_success_runs_the_task_publishes_outputs_and_streams_logs(
    fake: BatchFake, store: AzureBlobObjectStore, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    backend = make_backend(fake)
    result = run(backend, store, {"ledger": str(ledger), "seconds": 0.3})
    assert result.success, failure_text(result)
    assert launches(ledger) == 1
    assert store.get_bytes("results/x/result.txt") == b"done"
    job_id = job_of(result)
    assert [t for t in fake.tasks_created if t[0] == job_id] == [(job_id, "workload")]
    logs = log_lines(result)
    assert any("Submitted work job" in m for m in logs)
    assert any("stdout: sleepy work started" in m for m in logs), "stdout streamed while running"
    # The logs are kept in Blob after the task (and its node) are gone.
    assert b"sleepy work finished" in store.get_bytes(f"_compute/batch/{job_id}/logs/stdout.txt")
    # Scale-to-zero (the default): the pool went back to 0 nodes once nothing of ours was active.
    pool = next(p for p in fake.all_pools() if p.id == backend.pools().name())
    assert pool.target == 0
    # Every request was signed and every body matched the official spec (else the fake answers 4xx).
    assert not [r for r in fake.requests() if r.status in (400, 401, 403)]


def test_task_failure_surfaces_stderr_and_publishes_nothing(
    fake: BatchFake, store: AzureBlobObjectStore, tmp_path: Path
) -> None:
    result = run(make_backend(fake), store, {"ledger": str(tmp_path / "ledger"), "fail": 3})
    assert not result.success
    text = failure_text(result)
    assert "ended failed: exit code 3" in text
    assert "boom: work failed on purpose" in text
    assert not store.exists("results/x/result.txt")


def test_cancel_terminates_the_batch_job(
    fake: BatchFake, store: AzureBlobObjectStore, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    backend = make_backend(fake, InterruptedBackend)
    with pytest.raises(DagsterExecutionInterruptedError):
        dg.materialize(
            [make_asset({"ledger": str(ledger), "seconds": 30})],
            resources={"compute": backend, "storage": store},
            instance=INSTANCE,
        )
    (job,) = [j for j in fake.jobs.values() if j.body["poolInfo"].get("poolId") == backend.pools().name()]
    assert job.state == "completed"
    assert job.terminate_reason == "CanceledFromDagster"
    task = job.tasks["workload"]
    assert task.process is not None and task.process.wait(5) != 0, "the task's process was killed"
    assert backend.status(job.id).state is JobState.CANCELED
    assert not store.exists("results/x/result.txt")
    pool = next(p for p in fake.all_pools() if p.id == backend.pools().name())
    assert pool.target == 0, "a cancelled run leaves no node billing in scale-to-zero mode"


def test_retried_step_reattaches_to_its_task(
    fake: BatchFake, store: AzureBlobObjectStore, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    CRASHES.clear()
    result = run(
        make_backend(fake, CrashOnceBackend), store, {"ledger": str(ledger), "seconds": 0.5}, retries=1
    )
    assert result.success, failure_text(result)
    assert launches(ledger) == 1, "the retried step must reattach, not launch a second task"
    mat = result.asset_materializations_for_node("remote_thing")[0]
    assert mat.metadata["reattached"].value is True
    job_id = job_of(result)
    assert len([t for t in fake.tasks_created if t[0].startswith(job_id)]) == 1
    # The reattached session reads the Pipes messages where the running task writes them.
    assert any("says hello through Pipes" in m for m in log_lines(result))
    assert not any("did not receive any messages" in m for m in log_lines(result)[-12:])


# Every Batch operation a step uses, with the fault that hurts it most: POSTs lose their response after
# the service acted (the retry must not create a second job or task), reads get throttled, reset or time
# out. Each run carries several faults on different operations, to keep the suite short.
FAULT_RUNS = [
    [
        ("Pools_GetPool", "503"),
        ("Jobs_CreateJob", "reset_after"),
        ("Tasks_GetTask", "slow"),
        ("Tasks_GetTaskFile", "500"),
    ],
    [
        ("Pools_CreatePool", "reset_after"),
        ("Tasks_CreateTask", "reset_after"),
        ("Jobs_ListJobs", "429"),
        ("Tasks_ListTaskFiles", "reset"),
    ],
    [
        ("Jobs_GetJob", "reset"),
        ("Tasks_CreateTask", "slow"),
        ("Tasks_GetTask", "503"),
        ("Pools_ResizePool", "500"),
        ("Jobs_UpdateJob", "503"),
    ],
]


@pytest.mark.slow
def test_fault_at_every_call_still_gives_exactly_one_task_per_step(
    fake: BatchFake, store: AzureBlobObjectStore, tmp_path: Path
) -> None:
    for i, faults in enumerate(FAULT_RUNS):
        ledger = tmp_path / f"ledger{i}"
        backend = make_backend(fake, request_timeout_seconds=0.5)
        for operation, kind in faults:
            fake.inject(operation, kind, delay=1.0)
        result = run(backend, store, {"ledger": str(ledger), "seconds": 0.2})
        assert result.success, f"{faults}: {failure_text(result)}"
        left = [(f.operation, f.kind) for f in fake.faults if f.remaining]
        assert not left, f"faults never hit: {left}"
        job_id = job_of(result)
        assert len([t for t in fake.tasks_created if t[0] == job_id]) == 1, f"{faults}"
        assert launches(ledger) == 1, f"{faults}: the task ran {launches(ledger)} times"
        assert store.get_bytes("results/x/sub/nested.txt") == b"nested"


def step_retries(result: dg.ExecuteInProcessResult) -> int:
    return sum(
        1
        for e in INSTANCE.all_logs(result.run_id)
        if e.dagster_event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
    )


def test_a_task_lost_with_its_node_is_retried_with_exactly_one_successor_job(
    fake: BatchFake, store: AzureBlobObjectStore, tmp_path: Path
) -> None:
    """failureInfo category servererror (the node was lost): the RetryPolicy retries the step, whose
    lookup finds the failed job (not reattachable) and submits exactly one successor, `<job>-r2`."""
    ledger = tmp_path / "ledger"
    fake.lose_nodes(1)
    result = run(make_backend(fake), store, {"ledger": str(ledger), "seconds": 0.2}, retries=2)
    assert result.success, failure_text(result)
    assert step_retries(result) == 1
    job_id = job_of(result)
    assert job_id.endswith("-r2")
    base = job_id.removesuffix("-r2")
    assert [j for j, _ in fake.tasks_created if j.startswith(base)] == [base, job_id], "one job per attempt"


def test_a_task_that_failed_by_itself_fails_the_step_once(
    fake: BatchFake, store: AzureBlobObjectStore, tmp_path: Path
) -> None:
    """failureInfo category usererror (the task's exit code): retrying would fail the same way."""
    ledger = tmp_path / "ledger"
    result = run(make_backend(fake), store, {"ledger": str(ledger), "fail": 2}, retries=2)
    assert not result.success
    assert step_retries(result) == 0 and launches(ledger) == 1


def test_a_503_storm_outlasting_the_client_retries_retries_the_step_which_reattaches(
    fake: BatchFake, store: AzureBlobObjectStore, tmp_path: Path
) -> None:
    """Status reads answered 503 more times than azure-core retries: TransientAzureError fails the
    attempt, the RetryPolicy retries the step, and the retry follows the task already submitted."""
    ledger = tmp_path / "ledger"
    backend = make_backend(fake, call_attempts=2)
    fake.inject("Tasks_GetTask", "503", times=2, skip=1)
    result = run(backend, store, {"ledger": str(ledger), "seconds": 0.5}, retries=2)
    assert result.success, failure_text(result)
    assert step_retries(result) == 1
    job_id = job_of(result)
    assert [j for j, _ in fake.tasks_created if j.startswith(job_id)] == [job_id], "the retry reattached"
    assert launches(ledger) == 1


def test_bad_key_fails_at_once_with_what_to_fix_and_no_secret(fake: BatchFake) -> None:
    wrong = "c2VjcmV0LXdyb25nLWtleS0xMjM0NTY3ODkwMTIzNDU2"
    backend = make_backend(fake, account_key=wrong)
    with pytest.raises(AzureBatchError) as err:
        backend.pools().ensure()
    text = str(err.value)
    assert "403" in text and "AuthenticationFailed" in text and "AZURE_BATCH_ACCOUNT_KEY" in text
    assert wrong not in text
    assert wrong not in repr(backend)  # the key field is excluded from the repr


def test_fake_rejects_a_body_the_spec_does_not_allow(fake: BatchFake) -> None:
    from azure.batch import models  # noqa: TID251 (lazy: only when Batch is used)

    backend = make_backend(fake)
    body = {"id": "bad", "vmSize": "standard_d2s_v3", "targetDedicatedNodez": 1}
    with pytest.raises(AzureBatchError, match=r"InvalidRequestBody.*targetDedicatedNodez"):
        backend.service().call(
            "create_pool", backend.service().client.create_pool, models.BatchPoolCreateOptions(body)
        )


@pytest.mark.slow
def test_ingest_train_and_score_end_to_end_on_batch_with_the_real_workload(
    fake: BatchFake, store: AzureBlobObjectStore, tmp_path: Path, synthetic_source: Path
) -> None:
    """raw_mnist, mnist_model and mnist_predictions with all three tasks on Batch: the real workload package is
    delivered as resource files, the real start command resolves its requirements, metrics come back
    through Pipes over Blob and the outputs land in Azurite with their completion markers."""
    from assets.model import TrainingConfig, mnist_model
    from assets.predictions import INFERENCE_BATCHES, mnist_predictions
    from assets.raw_mnist import raw_mnist
    from resources.mnist_source import MnistSource
    from resources.prediction_checks import PredictionChecks
    from resources.quality import QualityGate
    from tests.support.synthetic import write_batch

    batch = AzureBatchBackend(
        account_url=fake.url,
        account_name=fake.account_name,
        account_key=fake.account_key,
        pool_id=f"e2e{uuid.uuid4().hex[:6]}",
        poll_initial_seconds=0.1,
        poll_max_seconds=0.5,
        pipes_interval_seconds=0.5,
        backoff_seconds=0.01,
        lro_polling_seconds=0,
    )
    instance = dg.DagsterInstance.ephemeral()
    resources = {
        "storage": store,
        "training_compute": batch,
        "scoring_compute": batch,
        "ingest_compute": batch,
        "mnist_source": MnistSource(location=str(synthetic_source)),
        "quality": QualityGate(min_accuracy=0.8),
        "prediction_checks": PredictionChecks(),
    }
    small = TrainingConfig(pca_components=20, kernel_components=200)
    trained = dg.materialize(
        [raw_mnist, mnist_model],
        resources=resources,
        instance=instance,
        run_config=dg.RunConfig(ops={"mnist_model": small}),
        raise_on_error=False,
    )
    assert trained.success, failure_text(trained)
    raw = trained.asset_materializations_for_node("raw_mnist")[0].metadata
    assert str(raw["compute_job"].value).startswith("mnist-ingest-")
    assert store.exists(f"raw/mnist/{raw['version'].value}/_manifest.json")
    model = trained.asset_materializations_for_node("mnist_model")[0].metadata
    assert str(model["compute_job"].value).startswith("mnist-train-")
    assert float(model["held_out_accuracy"].value) >= 0.8  # type: ignore[arg-type]
    logs = [e.user_message for e in instance.all_logs(trained.run_id)]
    assert any("metrics:" in m for m in logs), "the workload's Pipes messages reached Dagster over Blob"
    assert fake.start_task_runs >= 1

    write_batch(tmp_path / "b1", n=40)
    store.upload_dir(tmp_path / "b1", "inference/b1")
    store.put_bytes("inference/b1/_SUCCESS", b"")
    instance.add_dynamic_partitions(INFERENCE_BATCHES, ["b1"])
    scored = dg.materialize(
        [mnist_predictions], resources=resources, instance=instance, partition_key="b1", raise_on_error=False
    )
    assert scored.success, failure_text(scored)
    summary = store.get_json("predictions/b1/summary.json")
    assert summary["images"] == 40
    assert store.exists("predictions/b1/predictions.csv")
    # The prediction checks read the batch's IDX headers and the predictions from Blob storage.
    rows = {e.check_name: e for e in scored.get_asset_check_evaluations()}["one_prediction_per_image"]
    assert rows.passed and rows.metadata["images"].value == 40, rows.description


def test_settings_choose_azure_batch_only_with_blob_storage_and_keep_the_key_secret() -> None:
    from orchestration.settings import Settings, SettingsError
    from resources.storage import LocalObjectStore

    base = {
        "MNIST_COMPUTE": "azure_batch",
        "AZURE_BATCH_ACCOUNT_URL": "https://acct.westeurope.batch.azure.com",
        "AZURE_BATCH_ACCOUNT_KEY": "c2VjcmV0",
    }
    with pytest.raises(SettingsError, match="needs MNIST_STORAGE=azure_blob"):
        Settings.from_env(base)
    blob = {
        **base,
        "MNIST_STORAGE": "azure_blob",
        "AZURE_STORAGE_ACCOUNT_URL": "https://s.blob.core.windows.net",
    }
    with pytest.raises(SettingsError, match="MNIST_AZBATCH_IMAGE: expected 'publisher:offer:sku'"):
        Settings.from_env({**blob, "MNIST_AZBATCH_IMAGE": "ubuntu"})
    with pytest.raises(SettingsError, match="MNIST_AZBATCH_POOL_MODE: expected one of"):
        Settings.from_env({**blob, "MNIST_AZBATCH_POOL_MODE": "sometimes"})
    settings = Settings.from_env(
        {**blob, "MNIST_AZBATCH_POOL_MODE": "ephemeral", "MNIST_SCORING_COMPUTE": "local"}
    )
    resources = settings.resources()
    training = resources["training_compute"]
    assert isinstance(training, AzureBatchBackend) and training.pool_mode == "ephemeral"
    assert isinstance(training.account_key, dg.EnvVar), "the key stays a reference to the environment"
    assert type(resources["scoring_compute"]).__name__ == "LocalProcessBackend"
    assert type(resources["ingest_compute"]).__name__ == "LocalProcessBackend", (
        "ingest stays local unless set"
    )
    assert "c2VjcmV0" not in repr(settings)
    # Batch nodes cannot reach a local directory.
    with pytest.raises(AzureBatchError, match="MNIST_STORAGE=azure_blob"):
        training.submit(
            WorkloadRequest(task="train", idempotency_key="k", inputs={}, outputs={}),
            LocalObjectStore(root="/nonexistent"),
            {},
        )


# ---- the job's lifetime: created with noaction, its task added, then set to end with its task -------------
def requests_of(fake: BatchFake, job_id: str) -> list[tuple[str, Any]]:
    """(operation, body) of the successful requests that created or changed `job_id`, in order."""
    wanted = ("Jobs_CreateJob", "Tasks_CreateTask", "Jobs_UpdateJob", "Jobs_TerminateJob")
    return [
        (r.operation, r.body)
        for r in fake.requests()
        if r.operation in wanted
        and r.status < 300
        and (r.path.startswith(f"/jobs/{job_id}") or (r.body or {}).get("id") == job_id)
    ]


def wait_for_job_state(fake: BatchFake, job_id: str, state: str, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while fake.jobs[job_id].state != state and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake.jobs[job_id].state == state, f"job {job_id} is {fake.jobs[job_id].state}"


def test_job_is_set_to_end_with_its_task_only_once_the_task_exists(
    fake: BatchFake, store: AzureBlobObjectStore, tmp_path: Path
) -> None:
    """A job created with terminatejob and no task completes at once (the service counts no tasks as all
    complete), so the task is added to a noaction job which is then updated to terminatejob."""
    before = {p.id for p in fake.all_pools()}
    result = run(make_backend(fake, pool_mode="ephemeral"), store, {"ledger": str(tmp_path / "l")})
    assert result.success, failure_text(result)
    job_id = job_of(result)
    sent = requests_of(fake, job_id)
    assert [op for op, _ in sent] == ["Jobs_CreateJob", "Tasks_CreateTask", "Jobs_UpdateJob"]
    assert sent[0][1]["onAllTasksComplete"] == "noaction"
    assert sent[2][1] == {"onAllTasksComplete": "terminatejob"}, "a PATCH of the completion mode only"
    wait_for_job_state(fake, job_id, "completed")
    assert fake.jobs[job_id].terminate_reason == "AllTasksComplete"
    assert fake.jobs[job_id].body["metadata"], "the update kept the job's metadata (what retention keys on)"
    auto = {p.id for p in fake.all_pools()} - before
    assert len(auto) == 1
    deadline = time.monotonic() + 5
    while not all(p.state == "deleting" for p in fake.all_pools() if p.id in auto):
        assert time.monotonic() < deadline, "the auto pool went with its job"
        time.sleep(0.02)


def test_the_update_to_terminatejob_is_safe_to_repeat(
    fake: BatchFake, store: AzureBlobObjectStore, tmp_path: Path
) -> None:
    # The first PATCH lands but its response is lost: azure-core sends it again, which changes nothing.
    fake.inject("Jobs_UpdateJob", "reset_after")
    backend = make_backend(fake)
    result = run(backend, store, {"ledger": str(tmp_path / "l")})
    assert result.success, failure_text(result)
    job_id = job_of(result)
    assert [op for op, _ in requests_of(fake, job_id)].count("Jobs_UpdateJob") == 2
    wait_for_job_state(fake, job_id, "completed")
    # Once the job has ended with its task, the same update (a retried submit) is done already: no error.
    backend.end_with_task(job_id)


def test_a_task_that_cannot_be_added_leaves_no_job_behind(
    fake: BatchFake, store: AzureBlobObjectStore, tmp_path: Path
) -> None:
    backend = make_backend(fake, pool_mode="ephemeral", call_attempts=2)
    fake.inject("Tasks_CreateTask", "500", times=2)
    before = {p.id for p in fake.all_pools()}
    result = run(backend, store, {"ledger": str(tmp_path / "l")})
    assert not result.success
    assert "create_task" in failure_text(result)
    (job_id,) = [
        j.id for j in fake.jobs.values() if j.pool_id not in before and j.id.startswith("mnist-work-")
    ]
    assert not fake.jobs[job_id].tasks
    wait_for_job_state(fake, job_id, "completed")  # terminated, not left active with its auto pool
    auto = {p.id for p in fake.all_pools()} - before
    assert all(p.state == "deleting" for p in fake.all_pools() if p.id in auto)


class CrashBeforeUpdateBackend(AzureBatchBackend):
    """Dies (like a killed step process) after adding the task, before setting the job to end with it."""

    def end_with_task(self, job_id: str) -> None:
        if not CRASHES:
            CRASHES.append(job_id)
            raise RuntimeError("step process lost")
        super().end_with_task(job_id)

    def _terminate(self, job_id: str, reason: str) -> Any:
        if reason == SUBMIT_FAILED_REASON and job_id in CRASHES:
            return None  # a killed process cleans nothing up
        return super()._terminate(job_id, reason)


def test_a_submission_interrupted_before_the_update_is_finished_by_the_retried_step(
    fake: BatchFake, store: AzureBlobObjectStore, tmp_path: Path
) -> None:
    CRASHES.clear()
    ledger = tmp_path / "ledger"
    result = run(
        make_backend(fake, CrashBeforeUpdateBackend),
        store,
        {"ledger": str(ledger), "seconds": 0.3},
        retries=1,
    )
    assert result.success, failure_text(result)
    (job_id,) = CRASHES
    assert job_of(result) == job_id, "the retried step found the task and reattached"
    assert launches(ledger) == 1
    assert [op for op, _ in requests_of(fake, job_id)] == [
        "Jobs_CreateJob",
        "Tasks_CreateTask",
        "Jobs_UpdateJob",
    ]
    wait_for_job_state(fake, job_id, "completed")
    assert fake.jobs[job_id].terminate_reason == "AllTasksComplete"


def test_a_job_left_without_its_update_is_ended_by_the_next_submit(
    fake: BatchFake, store: AzureBlobObjectStore, tmp_path: Path
) -> None:
    """An orchestrator killed between creating the job and updating it, with no retry: the next submit
    sets the job (ours, older than an hour, still noaction) to end with its task, or at once without one."""
    backend = make_backend(fake)
    request = WorkloadRequest(task="work", idempotency_key=f"orphan-{uuid.uuid4()}", inputs={}, outputs={})
    orphan = backend.base_job_id(request)
    backend.create_job(orphan, request)
    fake.age_jobs(2 * 3600)
    assert run(backend, store, {"ledger": str(tmp_path / "l")}).success
    wait_for_job_state(fake, orphan, "completed")
