"""The shipped production instance (instance/production/dagster.yaml) passes Dagster's own config
validation, and its idempotent run coordinator queues one run per key (on SQLite, in process).
Building it on PostgreSQL is tests/integration/test_production_instance_postgres.py."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import dagster as dg
import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin

from instance_plugins.run_coordinator import IdempotentQueuedRunCoordinator
from tests.support.instance import (
    PRODUCTION_YAML,
    local_variant,
)


def test_schema_validation_accepts_the_shipped_yaml() -> None:
    config, _ = dagster_instance_config(str(PRODUCTION_YAML.parent), PRODUCTION_YAML.name)
    assert config["run_coordinator"]["class"] == "IdempotentQueuedRunCoordinator"
    assert config["telemetry"] == {"enabled": False}


@pytest.fixture
def sqlite_instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """The production settings with local storage, launcher and logs: the e2e tests' SQLite fallback."""
    config = local_variant(yaml.safe_load(PRODUCTION_YAML.read_text()), tmp_path, postgres_url=None)
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        yield instance


def _new_run(instance: dg.DagsterInstance, key: str | None) -> dg.DagsterRun:
    tags = {"adf/pipeline_run_id": key} if key else {}
    origin = RemoteJobOrigin(
        RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("mnist"), "__repository__"), "score_batch"
    )
    run = dg.DagsterRun(job_name="score_batch", run_id=str(uuid.uuid4()), tags=tags, remote_job_origin=origin)
    return instance.add_run(run)


def test_idempotent_coordinator_queues_one_run_per_key(sqlite_instance: dg.DagsterInstance) -> None:
    from dagster._core.run_coordinator import SubmitRunContext

    coordinator = sqlite_instance.run_coordinator
    assert isinstance(coordinator, IdempotentQueuedRunCoordinator)

    def submit(run: dg.DagsterRun) -> dg.DagsterRun:
        # The queued coordinator never uses the workspace; the webserver passes its own.
        return coordinator.submit_run(SubmitRunContext(run, workspace=cast(Any, None)))

    first = submit(_new_run(sqlite_instance, "k1"))
    assert first.status == dg.DagsterRunStatus.QUEUED
    duplicate = _new_run(sqlite_instance, "k1")
    assert submit(duplicate).run_id == first.run_id, "a duplicate answers with the run already queued"
    assert sqlite_instance.get_run_by_id(duplicate.run_id) is None, "and is never queued itself"
    # Without the tag, or with another key, nothing changes.
    untagged = [submit(_new_run(sqlite_instance, None)) for _ in range(2)]
    assert {r.status for r in untagged} == {dg.DagsterRunStatus.QUEUED}
    assert submit(_new_run(sqlite_instance, "k2")).run_id != first.run_id

    # Simultaneous duplicates (all created before any is submitted): exactly one is queued.
    created = [_new_run(sqlite_instance, "k3") for _ in range(5)]
    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(submit, created))
    assert len({a.run_id for a in answers}) == 1
    assert len(sqlite_instance.get_runs(dg.RunsFilter(tags={"adf/pipeline_run_id": "k3"}))) == 1


def test_the_local_instance_launches_idempotently_too(tmp_path: Path) -> None:
    """instance/local/dagster.yaml (./run ui, the daemon tests, benchmarks) has the same coordinator, so a
    launch with the same adf/pipeline_run_id starts one run whether it came through the gateway or not."""
    shutil.copy(PRODUCTION_YAML.parent.parent / "local" / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        coordinator = instance.run_coordinator
        assert isinstance(coordinator, IdempotentQueuedRunCoordinator)
        assert coordinator.idempotency_tag == "adf/pipeline_run_id"
        queue = coordinator.get_run_queue_config()
        assert queue.max_concurrent_runs == 2 and coordinator.dequeue_interval_seconds == 1
        from dagster._core.run_coordinator import SubmitRunContext

        def submit(run: dg.DagsterRun) -> dg.DagsterRun:
            return coordinator.submit_run(SubmitRunContext(run, workspace=cast(Any, None)))

        first = submit(_new_run(instance, "local-key"))
        assert submit(_new_run(instance, "local-key")).run_id == first.run_id
        assert len(instance.get_runs(dg.RunsFilter(tags={"adf/pipeline_run_id": "local-key"}))) == 1
