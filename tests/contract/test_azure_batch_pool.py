"""Pool lifecycle of the Azure Batch backend on the contract fake: reuse, a pool being deleted, ephemeral
pools gone after a failed or cancelled run, and retention of completed jobs."""

import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.errors import DagsterExecutionInterruptedError

from resources.storage import AzureBlobObjectStore
from tests.contract import test_azure_batch as shared
from tests.contract.test_azure_batch import (
    INSTANCE,
    InterruptedBackend,
    failure_text,
    job_of,
    make_asset,
    make_backend,
    run,
)
from tests.support.fakes.azure_batch import BatchFake

# The same fixtures as the backend tests (a fake per module, a fresh container per test).
fake = shared.fake
store = shared.store
fast_pipes_close = shared.fast_pipes_close

pytestmark = pytest.mark.azurite


def wait_until_gone(fake: BatchFake, pool_ids: set[str], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(p.deleted_at is not None for p in fake.all_pools() if p.id in pool_ids):
            return
        time.sleep(0.05)
    raise AssertionError(f"pools {pool_ids} still exist")


def test_pool_being_deleted_is_waited_for_then_recreated(
    fake: BatchFake, store: AzureBlobObjectStore, tmp_path: Path
) -> None:
    backend = make_backend(fake)
    pool_id = backend.pools().ensure()
    # An operator (or a cleanup) deletes the pool; deletion takes 10 simulated minutes (1 s here).
    fake.pool_delete_seconds = 600.0
    try:
        backend.pools().delete(pool_id)
        result = run(make_backend(fake, pool_id=backend.pool_id), store, {"ledger": str(tmp_path / "l")})
    finally:
        fake.pool_delete_seconds = 120.0
    assert result.success, failure_text(result)
    recreated = [r for r in fake.requests("Pools_CreatePool") if r.path == "/pools"]
    assert recreated, "the pool was created again once the old one was gone"
    assert any(p.id == pool_id and p.deleted_at is None for p in fake.all_pools())


def test_matching_pool_is_reused_and_persistent_pool_keeps_its_nodes(
    fake: BatchFake, store: AzureBlobObjectStore, tmp_path: Path
) -> None:
    backend = make_backend(fake, pool_mode="persistent")
    creates = len(fake.requests("Pools_CreatePool"))
    assert run(backend, store, {"ledger": str(tmp_path / "a")}).success
    assert run(
        make_backend(fake, pool_mode="persistent", pool_id=backend.pool_id),
        store,
        {"ledger": str(tmp_path / "b")},
    ).success
    assert len(fake.requests("Pools_CreatePool")) == creates + 1, "the second run reused the matching pool"
    pool = next(p for p in fake.all_pools() if p.id == backend.pools().name())
    assert pool.target == 1 and pool.deleted_at is None


def test_ephemeral_pool_is_gone_after_a_failed_and_after_a_cancelled_run(
    fake: BatchFake, store: AzureBlobObjectStore, tmp_path: Path
) -> None:
    before = {p.id for p in fake.all_pools()}
    failed = run(make_backend(fake, pool_mode="ephemeral"), store, {"ledger": str(tmp_path / "f"), "fail": 2})
    assert not failed.success
    with pytest.raises(DagsterExecutionInterruptedError):
        dg.materialize(
            [make_asset({"ledger": str(tmp_path / "c"), "seconds": 30})],
            resources={
                "compute": make_backend(fake, InterruptedBackend, pool_mode="ephemeral"),
                "storage": store,
            },
            instance=INSTANCE,
        )
    auto = {p.id for p in fake.all_pools()} - before
    assert len(auto) == 2, "one auto pool per job"
    # Batch deletes an auto pool with its job (failure: the task ended; cancel: the job was terminated).
    wait_until_gone(fake, auto)
    assert all(p.current == 0 for p in fake.all_pools() if p.id in auto)


def test_completed_jobs_are_deleted_after_the_retention(
    fake: BatchFake, store: AzureBlobObjectStore, tmp_path: Path
) -> None:
    backend = make_backend(fake, job_retention_hours=1.0)
    first = run(backend, store, {"ledger": str(tmp_path / "a")})
    assert first.success
    old_job = job_of(first)
    fake.age_jobs(2 * 3600)  # two hours later
    assert run(backend, store, {"ledger": str(tmp_path / "b")}).success
    deadline = time.monotonic() + 5
    while old_job in fake.jobs and time.monotonic() < deadline:
        time.sleep(0.05)
    assert old_job not in fake.jobs


def test_start_task_failing_on_every_node_fails_the_step_and_frees_the_pool(
    fake: BatchFake, store: AzureBlobObjectStore, tmp_path: Path
) -> None:
    backend = make_backend(
        fake, pool_mode="ephemeral", start_command="echo no such package >&2; exit 7", queue_check_seconds=0.2
    )
    before = {p.id for p in fake.all_pools()}
    result = run(backend, store, {"ledger": str(tmp_path / "l")})
    assert not result.success
    text = failure_text(result)
    assert "the start task failed on every node" in text and "exit code 7" in text
    assert not (tmp_path / "l").exists(), "the task never ran"
    auto = {p.id for p in fake.all_pools()} - before
    wait_until_gone(fake, auto)
