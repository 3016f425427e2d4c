"""What the settings decide about every asset step and job: retry policy, concurrency pool and its
limit (one per compute target, one training at a time), maximum runtime. Checked on the Definitions
the code location builds, which is what every launch path (jobs, the UI's Materialize) executes."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from orchestration.definitions import build_definitions
from orchestration.settings import Settings, SettingsError
from orchestration.step_policies import POOL_LIMIT_TAG

AZUREML = {
    "MNIST_STORAGE": "azure_blob",
    "AZURE_STORAGE_ACCOUNT_URL": "https://acct.blob.core.windows.net",
    "MNIST_AZUREML_SUBSCRIPTION": "s",
    "MNIST_AZUREML_RESOURCE_GROUP": "r",
    "MNIST_AZUREML_WORKSPACE": "w",
    "MNIST_AZUREML_REGION": "westeurope",
}
BATCH = {
    "MNIST_STORAGE": "azure_blob",
    "AZURE_STORAGE_ACCOUNT_URL": "https://acct.blob.core.windows.net",
    "AZURE_BATCH_ACCOUNT_URL": "https://acct.westeurope.batch.azure.com",
}


def steps(env: dict[str, str]) -> dict[str, tuple[str | None, str | None]]:
    """asset -> (pool, pool limit tag) in every job, the implicit asset job included."""
    defs = build_definitions(Settings.from_env(env))
    found: dict[str, tuple[str | None, str | None]] = {}
    jobs = [defs.resolve_implicit_global_asset_job_def()] + [
        defs.resolve_job_def(name) for name in ("mnist_pipeline", "train_model", "score_batch")
    ]
    for job in jobs:
        for node in job.graph.nodes:
            op = node.definition
            assert isinstance(op, dg.OpDefinition)
            seen = (op.pool, op.tags.get(POOL_LIMIT_TAG))
            assert found.setdefault(node.name, seen) == seen, f"{node.name} differs between jobs"
    return found


def test_every_step_gets_the_retry_policy_of_the_settings() -> None:
    defs = build_definitions(
        Settings.from_env(
            {"MNIST_RETRY_MAX": "5", "MNIST_RETRY_DELAY_SECONDS": "2", "MNIST_RETRY_JITTER": "full"}
        )
    )
    for job in [defs.resolve_implicit_global_asset_job_def(), defs.resolve_job_def("mnist_pipeline")]:
        for node in job.graph.nodes:
            assert isinstance(node.definition, dg.OpDefinition)
            assert node.definition.retry_policy == dg.RetryPolicy(
                max_retries=5, delay=2.0, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.FULL
            ), node.name
    off = build_definitions(Settings.from_env({"MNIST_RETRY_MAX": "0"}))
    ops = [n.definition for n in off.resolve_job_def("train_model").graph.nodes]
    assert all(isinstance(op, dg.OpDefinition) and op.retry_policy is None for op in ops)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {},
            {
                "raw_mnist": ("local:training", "1"),
                "mnist_model": ("local:training", "1"),
                "mnist_predictions": ("local:scoring", "8"),
            },
        ),
        (
            {
                **AZUREML,
                "MNIST_COMPUTE": "azureml",
                "MNIST_AZUREML_TRAINING": "command_job",
                "MNIST_AZUREML_COMPUTE_CLUSTER": "cpu-cluster",
                "MNIST_POOL_SCORING_LIMIT": "4",
            },
            {
                "raw_mnist": ("local:training", "1"),
                "mnist_model": ("azureml-cluster:cpu-cluster", "1"),
                "mnist_predictions": ("azureml-batch-endpoint:mnist-batch", "4"),
            },
        ),
        (  # one Batch pool for everything: training's limit holds for the scoring that shares it
            {**BATCH, "MNIST_COMPUTE": "azure_batch", "MNIST_INGEST_COMPUTE": "azure_batch"},
            {
                "raw_mnist": ("azure-batch-pool:mnist-workload", "1"),
                "mnist_model": ("azure-batch-pool:mnist-workload", "1"),
                "mnist_predictions": ("azure-batch-pool:mnist-workload", "1"),
            },
        ),
        (
            {**BATCH, "MNIST_SCORING_COMPUTE": "azure_batch", "MNIST_AZBATCH_POOL_MODE": "ephemeral"},
            {
                "raw_mnist": ("local:training", "1"),
                "mnist_model": ("local:training", "1"),
                "mnist_predictions": ("azure-batch-account:acct", "8"),
            },
        ),
    ],
)
def test_each_compute_target_is_a_pool_shared_by_the_assets_on_it(
    env: dict[str, str], expected: dict[str, tuple[str, str]]
) -> None:
    # mnist_model_serving runs no workload: it has no compute target, so no pool.
    assert steps(env) == {**expected, "mnist_model_serving": (None, None)}


def test_each_job_carries_its_max_runtime_from_the_settings() -> None:
    defs = build_definitions(
        Settings.from_env(
            {"MNIST_MAX_RUNTIME_TRAIN_SECONDS": "3600", "MNIST_MAX_RUNTIME_SCORE_SECONDS": "600"}
        )
    )
    runtimes = {
        name: defs.resolve_job_def(name).tags.get("dagster/max_runtime")
        for name in ("mnist_pipeline", "train_model", "score_batch")
    }
    assert runtimes == {"mnist_pipeline": "86400", "train_model": "3600", "score_batch": "600"}


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"MNIST_MAX_RUNTIME_SCORE_SECONDS": "10"}, "MNIST_MAX_RUNTIME_SCORE_SECONDS"),
        ({"MNIST_RETRY_MAX": "50"}, "MNIST_RETRY_MAX"),
        ({"MNIST_POOL_SCORING_LIMIT": "0"}, "MNIST_POOL_SCORING_LIMIT"),
    ],
)
def test_out_of_range_values_fail_at_load_naming_the_variable(env: dict[str, str], words: str) -> None:
    with pytest.raises(SettingsError, match=words):
        Settings.from_env(env)


def test_an_assets_explained_failure_fails_once(tmp_path: Path) -> None:
    """Scoring before any model passed the accuracy check is refused by the asset (dg.Failure): one
    attempt, no STEP_UP_FOR_RETRY, although the RetryPolicy allows 3."""
    env = {
        "MNIST_DATA_DIR": str(tmp_path / "data"),
        "MNIST_WORK_DIR": str(tmp_path / "work"),
        "MNIST_RETRY_DELAY_SECONDS": "0",
    }
    defs = build_definitions(Settings.from_env(env))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("inference_batches", ["b1"])
    job = defs.resolve_job_def("score_batch")
    result = job.execute_in_process(instance=instance, partition_key="b1", raise_on_error=False)
    assert not result.success
    events = [e.event_type for e in result.all_events]
    assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in events
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None and "No model has passed the accuracy check" in failure.to_string()
