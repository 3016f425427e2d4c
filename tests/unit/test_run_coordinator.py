"""The run coordinator's own rules, on the shipped instances' settings (SQLite, in process): a
duplicate idempotency key is honoured only for the same launch, a refused launch leaves no run, and
the pools' limits are set from the code location's steps, or dagster.yaml. Partitions checked at launch need a code location's asset
graph: tests/e2e/test_launch_seams.py checks them through a real webserver."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import dagster as dg
import pytest
import yaml
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.run_coordinator import SubmitRunContext

from instance_plugins.dagster_internals import pool_limits
from instance_plugins.run_coordinator import IdempotentQueuedRunCoordinator
from tests.support.instance import PRODUCTION_YAML, local_variant

KEY = "adf/pipeline_run_id"


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dg.DagsterInstance]:
    """The production settings with local storage, launcher and logs (one for the module: each test
    uses keys of its own)."""
    home = tmp_path_factory.mktemp("instance")
    config = local_variant(yaml.safe_load(PRODUCTION_YAML.read_text()), home, postgres_url=None)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def new_run(
    instance: dg.DagsterInstance,
    job: str,
    tags: dict[str, str],
    run_config: dict[str, Any] | None = None,
    parent: dg.DagsterRun | None = None,
) -> dg.DagsterRun:
    origin = RemoteJobOrigin(
        RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("mnist"), "__repository__"), job
    )
    run = dg.DagsterRun(
        job_name=job,
        run_id=str(uuid.uuid4()),
        tags=tags,
        run_config=run_config or {},
        remote_job_origin=origin,
        parent_run_id=parent.run_id if parent else None,
        root_run_id=parent.run_id if parent else None,
    )
    return instance.add_run(run)


def submit(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dg.DagsterRun:
    # No workspace: the partition check needs one and is left to the e2e test.
    return instance.run_coordinator.submit_run(SubmitRunContext(run, workspace=cast(Any, None)))


def refusal(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    with pytest.raises(Exception) as raised:
        submit(instance, run)
    message = str(raised.value)
    assert message.startswith("LaunchRefused: "), message
    # What a GraphQL caller gets: a PythonError with this message and no stack (HTTP 200).
    error = getattr(raised.value, "error")  # noqa: B009
    assert error._className == "LaunchRefused" and error._stack == []
    assert error._message == message.removeprefix("LaunchRefused: ")
    assert instance.get_run_by_id(run.run_id) is None, "a refused launch leaves no run"
    return message


def test_a_key_already_used_by_another_job_is_refused_naming_both_launches(
    instance: dg.DagsterInstance,
) -> None:
    first = submit(instance, new_run(instance, "train_model", {KEY: "k1"}))
    message = refusal(instance, new_run(instance, "score_batch", {KEY: "k1", "dagster/partition": "b1"}))
    for part in ("adf/pipeline_run_id=k1", first.run_id, "job train_model", "job score_batch", "'b1'"):
        assert part in message, f"{part!r} not in: {message}"
    assert [r.run_id for r in instance.get_runs(dg.RunsFilter(tags={KEY: "k1"}))] == [first.run_id]


def test_a_key_is_refused_for_another_partition_or_run_config(instance: dg.DagsterInstance) -> None:
    first = submit(instance, new_run(instance, "score_batch", {KEY: "k2", "dagster/partition": "b1"}))
    other_partition = refusal(
        instance, new_run(instance, "score_batch", {KEY: "k2", "dagster/partition": "b2"})
    )
    assert "partition ('b1' / 'b2')" in other_partition and first.run_id in other_partition
    config = {"ops": {"mnist_model": {"config": {"seed": 1}}}}
    other_config = refusal(
        instance, new_run(instance, "score_batch", {KEY: "k2", "dagster/partition": "b1"}, run_config=config)
    )
    assert "run config" in other_config
    # The same launch again still answers with the first run, and leaves no second one.
    again = new_run(instance, "score_batch", {KEY: "k2", "dagster/partition": "b1"})
    assert submit(instance, again).run_id == first.run_id
    assert instance.get_run_by_id(again.run_id) is None


def test_a_re_execution_is_queued_although_it_inherits_the_key(instance: dg.DagsterInstance) -> None:
    """Re-executing an ADF-launched run (UI, run retries) copies its tags, key included."""
    first = submit(instance, new_run(instance, "train_model", {KEY: "k3"}))
    retry = new_run(instance, "train_model", {KEY: "k3"}, parent=first)
    queued = submit(instance, retry)
    assert queued.run_id == retry.run_id and queued.status == dg.DagsterRunStatus.QUEUED


def planned_run(instance: dg.DagsterInstance, job: str) -> dg.DagsterRun:
    """A run of one of the code location's jobs, with its execution plan (the steps' pools and tags),
    as the webserver creates it for a launch (default settings: everything local)."""
    from orchestration.definitions import build_definitions
    from orchestration.settings import Settings

    job_def = build_definitions(Settings.from_env({})).resolve_job_def(job)
    origin = RemoteJobOrigin(
        RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("mnist"), "__repository__"), job
    )
    return instance.create_run_for_job(
        job_def, run_config={}, tags={"dagster/partition": "b1"}, remote_job_origin=origin
    )


def test_simultaneous_duplicates_through_separate_coordinators_of_one_process_start_one_run(
    instance: dg.DagsterInstance,
) -> None:
    """Dagster builds an instance's coordinator lazily and without a lock: the first launches arriving
    together in a fresh webserver can each get a coordinator object of their own. They still queue one
    run per key."""
    from concurrent.futures import ThreadPoolExecutor

    ref = instance.get_ref()
    coordinators = []
    for _ in range(6):
        coordinator = ref.run_coordinator
        assert isinstance(coordinator, IdempotentQueuedRunCoordinator)
        coordinator.register_instance(instance)
        coordinators.append(coordinator)
    runs = [new_run(instance, "train_model", {KEY: "k-simultaneous"}) for _ in coordinators]

    def go(i: int) -> str:
        context = SubmitRunContext(runs[i], workspace=cast(Any, None))
        return coordinators[i].submit_run(context).run_id

    with ThreadPoolExecutor(6) as pool:
        answered = set(pool.map(go, range(6)))
    assert len(answered) == 1
    queued = instance.get_runs(dg.RunsFilter(tags={KEY: "k-simultaneous"}))
    assert [r.run_id for r in queued] == list(answered)


def test_pool_limits_come_from_the_code_location_before_a_run_is_queued(instance: dg.DagsterInstance) -> None:
    """The limits of the compute targets' pools travel with the steps (tag mnist/pool_limit): a launch
    of either job sets them in storage; a limit changed by hand is put back at the next launch."""
    granularity = instance.get_concurrency_config().pool_config.pool_granularity
    assert granularity is not None and granularity.value == "run", "a pool's limit counts runs"
    coordinator = instance.run_coordinator
    assert isinstance(coordinator, IdempotentQueuedRunCoordinator) and coordinator.pool_limits == {}
    submit(instance, planned_run(instance, "mnist_pipeline"))
    assert pool_limits(instance) == {"local:training": 1, "local:scoring": 8}
    instance.event_log_storage.set_concurrency_slots("local:training", 3)
    submit(instance, planned_run(instance, "train_model"))
    assert pool_limits(instance)["local:training"] == 1


def test_a_pool_row_created_meanwhile_by_another_process_does_not_fail_the_launch(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dagster creates a pool's row by select-then-insert: when another process (a concurrent launch, the
    daemon) created it in between, the insert fails with a unique violation (seen on PostgreSQL with
    simultaneous ADF launches). The launch sets the limit again instead of failing with HTTP 500."""
    from sqlalchemy.exc import IntegrityError

    import instance_plugins.run_coordinator as coordinator_module

    real = coordinator_module.set_pool_limit
    raised: list[str] = []

    def racing(inst: dg.DagsterInstance, pool: str, limit: int) -> None:
        if not raised:
            raised.append(pool)
            real(inst, pool, limit)  # the other process's row
            raise IntegrityError("INSERT INTO concurrency_limits", {}, Exception("duplicate key value"))
        real(inst, pool, limit)

    monkeypatch.setattr(coordinator_module, "set_pool_limit", racing)
    instance.event_log_storage.set_concurrency_slots("local:scoring", 3)
    queued = submit(instance, planned_run(instance, "score_batch"))
    assert queued.status == dg.DagsterRunStatus.QUEUED
    assert raised == ["local:scoring"] and pool_limits(instance)["local:scoring"] == 8


def test_dagster_yaml_pool_limits_override_the_code_location(tmp_path: Path) -> None:
    config = local_variant(yaml.safe_load(PRODUCTION_YAML.read_text()), tmp_path, postgres_url=None)
    config["run_coordinator"]["config"]["pool_limits"] = {"local:scoring": 2}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        submit(instance, planned_run(instance, "score_batch"))
        assert pool_limits(instance) == {"local:scoring": 2}


def test_a_pool_limit_out_of_range_fails_at_load_naming_it(tmp_path: Path) -> None:
    config = local_variant(yaml.safe_load(PRODUCTION_YAML.read_text()), tmp_path, postgres_url=None)
    config["run_coordinator"]["config"]["pool_limits"] = {"mnist-training": -1}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    with (
        dg.DagsterInstance.from_config(str(tmp_path)) as instance,
        pytest.raises(
            dg.DagsterInvalidConfigError, match=r"pool_limits.*from 0 to 1000.*'mnist-training': -1"
        ),
    ):
        _ = instance.run_coordinator
