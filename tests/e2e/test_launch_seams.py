"""Launches over GraphQL, as the UI and ADF make them, against a real dagster-webserver +
dagster-daemon on the production instance settings (tests/support/instance.py: PostgreSQL when one
answers, else SQLite; runs as local subprocesses).

- Two trainings launched the way the UI's *Materialize* does (the implicit asset job with an asset
  selection, no job tags) run one after the other: the training pool's limit is 1.
- A launch whose idempotency key (`adf/pipeline_run_id`) belongs to another job's run is refused,
  naming both launches, and leaves no run behind; an identical retry still gets the first run.
- A launch of the partitioned job without a partition, or with a partition that was never added, is
  refused before any run exists, saying which partition and how to add it; nothing is published.
  Once the partition is added, the same launch runs.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adf_bridge.templates.queries import ADD_PARTITION_QUERY, LAUNCH_QUERY
from tests.support.instance import instance_yaml
from tests.support.synthetic import write_batch, write_source
from tests.support.webserver import dagster_services, graphql

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPOSITORY = {"repositoryLocationName": "mnist", "repositoryName": "__repository__"}
SMALL_MODEL = {"ops": {"mnist_model": {"config": {"pca_components": 10, "kernel_components": 50}}}}
# The implicit asset job's executor runs each step in a process of its own unless told otherwise;
# one process per run keeps these runs to seconds on 2 cores (what is limited is the run, either way).
# The implicit asset job runs in process (orchestration/definitions.py): no executor config to give.
MATERIALIZE_CONFIG = {**SMALL_MODEL}
RUN = """query Run($runId: ID!) {
  runOrError(runId: $runId) { ... on Run { runId jobName status startTime endTime tags { key value } } }
}"""
RUNS_TAGGED = """query Runs($key: String!, $value: String!) {
  runsOrError(filter: {tags: [{key: $key, value: $value}]}) { ... on Runs { results { runId jobName status } } }
}"""
ACTIVE = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Webserver + daemon over a fresh production-like instance, local storage, synthetic MNIST."""
    tmp = tmp_path_factory.mktemp("launch")
    write_source(tmp / "source", n_train=300, n_test=100)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "MNIST_", "DAGSTER_"))}
    env.update(
        MNIST_SOURCE=str(tmp / "source"),
        MNIST_DATA_DIR=str(tmp / "storage"),
        MNIST_WORK_DIR=str(tmp / "compute"),
        MNIST_MIN_ACCURACY="0.8",
    )
    with instance_yaml(tmp / "home") as instance, dagster_services(tmp / "home", env) as services:
        yield {"url": services.graphql_url, "storage": tmp / "storage", "instance": instance}
        deadline = time.monotonic() + 120  # leave no run behind when the services stop
        while time.monotonic() < deadline and any(
            r["status"] in ACTIVE
            for r in graphql(services.graphql_url, "{ runsOrError { ... on Runs { results { status } } } }")[
                "runsOrError"
            ]["results"]
        ):
            time.sleep(0.5)


def launch(
    url: str,
    job: str,
    tags: dict[str, str] | None = None,
    run_config: dict[str, Any] | None = None,
    assets: list[str] | None = None,
) -> dict[str, Any]:
    """`launchRun` as the UI and ADF send it; returns its answer (LaunchRunSuccess or an error)."""
    selector: dict[str, Any] = {**REPOSITORY, "jobName": job}
    if assets:
        selector["assetSelection"] = [{"path": [a]} for a in assets]
    params = {
        "selector": selector,
        "runConfigData": run_config or {},
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
    }
    return graphql(url, LAUNCH_QUERY, {"executionParams": params})["launchRun"]


def run_of(url: str, run_id: str) -> dict[str, Any]:
    return graphql(url, RUN, {"runId": run_id})["runOrError"]


def runs_tagged(url: str, key: str, value: str) -> list[dict[str, Any]]:
    return graphql(url, RUNS_TAGGED, {"key": key, "value": value})["runsOrError"]["results"]


def wait_until_done(url: str, run_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (run := run_of(url, run_id))["status"] in ACTIVE:
        assert time.monotonic() < deadline, f"run {run_id} still {run['status']} after {timeout:.0f} s"
        time.sleep(0.5)
    return run


def add_partition(url: str, key: str) -> None:
    answer = graphql(
        url,
        ADD_PARTITION_QUERY,
        {
            "repositorySelector": REPOSITORY,
            "partitionsDefName": "inference_batches",
            "partitionKey": key,
        },
    )["addDynamicPartition"]
    assert answer["__typename"] == "AddDynamicPartitionSuccess", answer


def refusal(answer: dict[str, Any]) -> str:
    """The message of a refused launch: a clean error answer (no stack), not a run."""
    assert answer["__typename"] == "PythonError", f"expected the launch to be refused, got {answer}"
    return answer["message"]


@pytest.fixture(scope="module")
def two_materializations(site: dict[str, Any]) -> list[dict[str, Any]]:
    """Two trainings as the UI's Materialize launches them: the implicit asset job, an asset
    selection, no tags. Watches both until they end; returns them in the order they started."""
    url = site["url"]
    answers = [
        launch(url, "__ASSET_JOB", run_config=MATERIALIZE_CONFIG, assets=["raw_mnist", "mnist_model"])
        for _ in range(2)
    ]
    assert all(a["__typename"] == "LaunchRunSuccess" for a in answers), answers
    ids = [a["run"]["runId"] for a in answers]
    seen_together: list[dict[str, str]] = []
    deadline = time.monotonic() + 300
    while True:
        statuses = {run_id: run_of(url, run_id)["status"] for run_id in ids}
        if all(s in ("STARTING", "STARTED") for s in statuses.values()):
            seen_together.append(statuses)
        if not any(s in ACTIVE for s in statuses.values()):
            break
        assert time.monotonic() < deadline, f"the trainings did not end: {statuses}"
        time.sleep(0.2)
    runs = sorted((run_of(url, run_id) for run_id in ids), key=lambda r: r["startTime"])
    for run in runs:
        run["seen_running_together"] = seen_together
    return runs


def test_materialize_runs_one_training_at_a_time(two_materializations: list[dict[str, Any]]) -> None:
    first, second = two_materializations
    assert [first["status"], second["status"]] == ["SUCCESS", "SUCCESS"], two_materializations
    assert {first["jobName"], second["jobName"]} == {"__ASSET_JOB"}
    assert not any(t["key"] == "mnist/workload" for t in first["tags"] + second["tags"])
    assert first["seen_running_together"] == [], "both trainings were running at the same time"
    assert second["startTime"] >= first["endTime"], (
        f"the second training started {first['endTime'] - second['startTime']:.1f} s before the first ended"
    )


def test_an_idempotency_key_of_another_job_is_refused_naming_both(
    site: dict[str, Any], two_materializations: list[dict[str, Any]]
) -> None:
    url, key = site["url"], f"adf-{uuid.uuid4()}"
    add_partition(url, "for-key-test")
    first = launch(url, "train_model", {"adf/pipeline_run_id": key}, SMALL_MODEL)
    assert first["__typename"] == "LaunchRunSuccess", first
    first_id = first["run"]["runId"]

    message = refusal(
        launch(url, "score_batch", {"adf/pipeline_run_id": key, "dagster/partition": "for-key-test"})
    )
    for part in (key, first_id, "train_model", "score_batch", "for-key-test"):
        assert part in message, f"{part!r} not in the refusal: {message}"
    # Nothing was left behind for the refused launch, and the first run is untouched.
    assert [r["runId"] for r in runs_tagged(url, "adf/pipeline_run_id", key)] == [first_id]
    # The same launch again (ADF retrying) still answers with the first run.
    again = launch(url, "train_model", {"adf/pipeline_run_id": key}, SMALL_MODEL)
    assert again["__typename"] == "LaunchRunSuccess" and again["run"]["runId"] == first_id, again
    assert wait_until_done(url, first_id)["status"] == "SUCCESS"


def test_a_partitioned_job_without_a_partition_is_refused_at_launch(site: dict[str, Any]) -> None:
    url, case = site["url"], str(uuid.uuid4())
    message = refusal(launch(url, "score_batch", {"test/case": case}))
    for part in ("score_batch", "inference_batches", "dagster/partition"):
        assert part in message, f"{part!r} not in the refusal: {message}"
    assert "non-partitioned run" not in message
    assert runs_tagged(url, "test/case", case) == [], "a refused launch leaves no run"


def test_a_partition_never_added_is_refused_before_anything_is_published(
    site: dict[str, Any], two_materializations: list[dict[str, Any]]
) -> None:
    url, case, batch = site["url"], str(uuid.uuid4()), "never-added"
    folder: Path = site["storage"] / "inference" / batch
    write_batch(folder, n=20)
    (folder / "_SUCCESS").touch()
    published = site["storage"] / "predictions" / batch

    as_adf = refusal(launch(url, "score_batch", {"test/case": case, "dagster/partition": batch}))
    as_ui = refusal(
        launch(
            url, "__ASSET_JOB", {"test/case": case, "dagster/partition": batch}, assets=["mnist_predictions"]
        )
    )
    for message in (as_adf, as_ui):
        for part in (repr(batch), "inference_batches", "addDynamicPartition"):
            assert part in message, f"{part!r} not in the refusal: {message}"
    assert runs_tagged(url, "test/case", case) == [], "a refused launch leaves no run"
    assert not published.exists(), "predictions were published for a refused launch"

    # Added as the refusal says, the same launch runs and publishes.
    add_partition(url, batch)
    answer = launch(url, "score_batch", {"test/case": case, "dagster/partition": batch})
    assert answer["__typename"] == "LaunchRunSuccess", answer
    assert wait_until_done(url, answer["run"]["runId"])["status"] == "SUCCESS"
    assert len((published / "predictions.csv").read_text().splitlines()) == 21
