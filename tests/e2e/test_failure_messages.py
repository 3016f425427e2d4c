"""A workload failure is the step's own failure message, as the Dagster UI shows it: a batch whose file is
not IDX, scored on the local backend through a real dagster-webserver and dagster-daemon, and the failed
run's events read back with the webserver's GraphQL (the fields the UI's run page reads)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.gateway import Dagster, clean_env

pytestmark = [pytest.mark.slow]

ADD_PARTITION = """mutation($s: RepositorySelector!, $d: String!, $k: String!) {
  addDynamicPartition(repositorySelector: $s, partitionsDefName: $d, partitionKey: $k) { __typename } }"""
LAUNCH = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
STATUS = "query($r: ID!) { runOrError(runId: $r) { ... on Run { status } } }"
# What the UI's run page reads of a failed step: the event's message, its error (message, class, stack,
# causes) and the failure's metadata.
FAILURE_EVENTS = """query($r: ID!) { logsForRun(runId: $r) { ... on EventConnection { events {
  __typename
  ... on ExecutionStepFailureEvent {
    stepKey message
    error { message className stack causes { message } }
    failureMetadata { metadataEntries { label ... on TextMetadataEntry { text } } }
  }
  ... on RunFailureEvent { message }
} } } }"""
# Plain bytes: the first four ("thes") are read as the IDX magic number.
NOT_IDX = b"these are not MNIST images"
EXPECTED_HEADLINE = (
    "notes.idx3-ubyte.gz: an input file is not an MNIST-shaped IDX file: expected an unsigned-byte IDX "
    "magic number (0x0000080N), found 0x74686573"
)


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One score_batch run of a batch holding a file that is not IDX, ended, and its failure events."""
    tmp = tmp_path_factory.mktemp("failure")
    storage = tmp / "storage"
    batch = storage / "inference" / "not-digits"
    batch.mkdir(parents=True)
    (batch / "notes.idx3-ubyte.gz").write_bytes(NOT_IDX)
    (batch / "_SUCCESS").write_bytes(b"")
    # A promoted model: the workload checks every file of the batch before it loads the model, so the
    # model is never opened and training is not needed for this failure.
    model = storage / "models" / "mnist" / "v0" / "model"
    model.mkdir(parents=True)
    (model / "MLmodel").write_text("flavors: {}\n")
    (storage / "models" / "mnist" / "current.json").write_text(
        '{"version": "v0", "model": "models/mnist/v0/model"}'
    )
    dagster = Dagster(
        tmp / "home", clean_env(MNIST_DATA_DIR=str(storage), MNIST_WORK_DIR=str(tmp / "compute"))
    )
    try:
        dagster.start_webserver()
        dagster.start_daemon()
        selector = {"repositoryLocationName": "mnist", "repositoryName": "__repository__"}
        added = dagster.graphql(ADD_PARTITION, {"s": selector, "d": "inference_batches", "k": "not-digits"})
        assert added["data"]["addDynamicPartition"]["__typename"] == "AddDynamicPartitionSuccess", added
        params = {
            "selector": {**selector, "jobName": "score_batch"},
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "not-digits"}]},
        }
        launched = dagster.graphql(LAUNCH, {"p": params})["data"]["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        deadline = time.monotonic() + 180
        status = None
        while time.monotonic() < deadline:
            status = dagster.graphql(STATUS, {"r": run_id})["data"]["runOrError"]["status"]
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                break
            time.sleep(0.5)
        assert status == "FAILURE", (
            f"run {run_id} is {status}:\n{(dagster.home / 'daemon.log').read_text()[-3000:]}"
        )
        events = dagster.graphql(FAILURE_EVENTS, {"r": run_id})["data"]["logsForRun"]["events"]
        yield {"events": events, "run_id": run_id}
    finally:
        dagster.stop()


def test_the_step_failure_says_what_was_wrong_in_which_file(failed_run: dict[str, Any]) -> None:
    [step] = [e for e in failed_run["events"] if e["__typename"] == "ExecutionStepFailureEvent"]
    assert step["stepKey"] == "mnist_predictions"
    error = step["error"]
    # The error's first line, the UI's headline for the failure, is the workload's own explanation,
    # not "Error occurred while executing op ..." with the cause at the end of a traceback.
    headline = error["message"].splitlines()[0]
    assert headline.endswith(f"WorkloadFailed: {EXPECTED_HEADLINE}"), error["message"][:1500]
    assert "Error occurred while executing" not in error["message"]
    # Below it: which job, on which backend, and the end of the workload's stderr (its traceback).
    assert "on local-process" in error["message"] and "IdxFormatError" in error["message"], error["message"]
    metadata = {m["label"]: m.get("text") for m in step["failureMetadata"]["metadataEntries"]}
    assert metadata["file"] == "notes.idx3-ubyte.gz"
    assert metadata["expected"] == "an unsigned-byte IDX magic number (0x0000080N)"
    assert metadata["found"] == "0x74686573"
    assert metadata["backend"] == "local-process" and metadata["task"] == "score" and metadata["job"]
