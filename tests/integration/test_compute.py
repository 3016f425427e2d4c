"""The shared compute driver on the local backend: one launch per step, reattach, cancel, failures."""

from pathlib import Path
from typing import ClassVar

import dagster as dg
import pytest
from dagster._core.errors import DagsterExecutionInterruptedError

from resources.compute import (
    ComputeBackend,
    JobState,
    JobStatus,
    LocalProcessBackend,
    WorkloadRequest,
    idempotency_key,
)
from resources.storage import LocalObjectStore, ObjectStore


class CrashOnceBackend(LocalProcessBackend):
    """Dies (like a killed step process) right after the first submission, leaving the job running."""

    crashes: ClassVar[list[str]] = []

    def _follow(self, context: dg.AssetExecutionContext, job_id: str) -> JobStatus:
        if not self.crashes:
            self.crashes.append(job_id)
            raise RuntimeError("step process lost")
        return super()._follow(context, job_id)


class InterruptedBackend(LocalProcessBackend):
    """The Dagster run is terminated while the job runs."""

    def wait(self, job_id: str, seconds: float) -> JobStatus:
        status = super().wait(job_id, seconds)
        if status.state is JobState.RUNNING:
            raise DagsterExecutionInterruptedError()
        return status


def make_asset(params: dict[str, object], retries: int = 0) -> dg.AssetsDefinition:
    @dg.asset(retry_policy=dg.RetryPolicy(max_retries=retries) if retries else None)
    def remote_thing(
        context: dg.AssetExecutionContext, compute: ComputeBackend, storage: ObjectStore
    ) -> dg.MaterializeResult:
        request = WorkloadRequest(
            task="work",
            idempotency_key=idempotency_key(context, "work"),
            inputs={},
            outputs={"out": "results/x"},
            params=params,  # type: ignore[arg-type]
        )
        result = compute.run(context, request, storage)
        return dg.MaterializeResult(metadata={"job": result.job_id, "reattached": result.reattached})

    return remote_thing


def run(
    tmp_path: Path, backend: LocalProcessBackend, params: dict[str, object], retries: int = 0
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [make_asset(params, retries)],
        resources={"compute": backend, "storage": LocalObjectStore(root=str(tmp_path / "store"))},
        raise_on_error=False,
        instance=INSTANCE,
    )


INSTANCE = dg.DagsterInstance.ephemeral()


def log_lines(result: dg.ExecuteInProcessResult) -> list[str]:
    return [e.user_message for e in INSTANCE.all_logs(result.run_id)]


def backend(cls: type[LocalProcessBackend], tmp_path: Path) -> LocalProcessBackend:
    return cls(work_dir=str(tmp_path / "compute"), module="tests.support.sleepy", poll_initial_seconds=0.05)


def launches(ledger: Path) -> int:
    return len(ledger.read_text().splitlines()) if ledger.exists() else 0


def test_success_collects_outputs_and_streams_logs(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    result = run(tmp_path, backend(LocalProcessBackend, tmp_path), {"ledger": str(ledger)})
    assert result.success
    assert launches(ledger) == 1
    assert (tmp_path / "store" / "results" / "x" / "result.txt").read_text() == "done"
    logs = log_lines(result)
    assert any("Submitted work job" in m for m in logs)
    # The job's stdout reached the Dagster logs.
    assert any("stdout: sleepy work finished" in m for m in logs)


def test_retry_reattaches_instead_of_resubmitting(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    CrashOnceBackend.crashes.clear()
    result = run(
        tmp_path, backend(CrashOnceBackend, tmp_path), {"ledger": str(ledger), "seconds": 1.0}, retries=1
    )
    assert result.success
    assert launches(ledger) == 1, "the retried step must reattach, not launch a second job"
    mat = result.asset_materializations_for_node("remote_thing")[0]
    assert mat.metadata["reattached"].value is True


def test_cancel_kills_the_job(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    b = backend(InterruptedBackend, tmp_path)
    with pytest.raises(DagsterExecutionInterruptedError):
        dg.materialize(
            [make_asset({"ledger": str(ledger), "seconds": 30})],
            resources={"compute": b, "storage": LocalObjectStore(root=str(tmp_path / "store"))},
        )
    job_dirs = list((tmp_path / "compute" / "jobs").iterdir())
    assert len(job_dirs) == 1
    status = LocalProcessBackend(work_dir=str(tmp_path / "compute")).status(job_dirs[0].name)
    assert status.state is JobState.CANCELED
    assert not (tmp_path / "store" / "results").exists()


def test_failure_surfaces_stderr(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    result = run(tmp_path, backend(LocalProcessBackend, tmp_path), {"ledger": str(ledger), "fail": 3})
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None
    assert "ended failed: exit code 3" in failure.to_string()
    assert "boom: work failed on purpose" in failure.to_string()
    assert not (tmp_path / "store" / "results").exists(), "a failed job publishes no outputs"


def retries_of(result: dg.ExecuteInProcessResult) -> int:
    return sum(
        1
        for e in INSTANCE.all_logs(result.run_id)
        if e.dagster_event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
    )


def test_a_job_lost_to_the_machine_is_retried_with_exactly_one_new_job(tmp_path: Path) -> None:
    """A task killed from outside (a preempted node: SIGKILL) is an infrastructure failure: the
    RetryPolicy retries the step, which submits exactly one successor job (a job that ended FAILED
    cannot be reattached), and the run succeeds."""
    ledger = tmp_path / "ledger"
    params = {"ledger": str(ledger), "preempt": 1}
    result = run(tmp_path, backend(LocalProcessBackend, tmp_path), params, retries=2)
    assert result.success
    assert retries_of(result) == 1
    assert launches(ledger) == 2, "one job per attempt that needed one: the lost one and its successor"
    assert any("lost to the infrastructure" in m and "SIGKILL" in m for m in log_lines(result))


def test_a_failing_workload_fails_once(tmp_path: Path) -> None:
    """A job that failed on its own (its code exited non-zero) would fail again: no retry, one job."""
    ledger = tmp_path / "ledger"
    result = run(
        tmp_path, backend(LocalProcessBackend, tmp_path), {"ledger": str(ledger), "fail": 3}, retries=2
    )
    assert not result.success
    assert retries_of(result) == 0 and launches(ledger) == 1


def test_bad_input_fails_once_with_what_was_wrong(tmp_path: Path) -> None:
    """Even a job killed after refusing its input is not retried when it gave its failure record."""
    ledger = tmp_path / "ledger"
    params = {"ledger": str(ledger), "bad_input": True}
    result = run(tmp_path, backend(LocalProcessBackend, tmp_path), params, retries=2)
    assert not result.success
    assert retries_of(result) == 0 and launches(ledger) == 1
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None and "not an MNIST image file" in failure.to_string()
