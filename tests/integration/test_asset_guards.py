"""The assets fail before they publish: mnist_predictions refuses a run without a partition, or with
one that was never added, before any remote work (for runs that bypass the instance's run
coordinator, such as in-process execution), and mnist_model moves models/mnist/current.json only
after everything else that can fail."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from assets.layout import CURRENT, MODELS_PREFIX, RAW_PREFIX, model_version_prefix
from assets.model import TrainingConfig, mnist_model, model_version
from assets.predictions import INFERENCE_BATCHES, mnist_predictions
from resources.compute import LocalProcessBackend
from resources.prediction_checks import PredictionChecks
from resources.quality import QualityGate
from resources.storage import LocalObjectStore
from tests.support.synthetic import write_batch


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    """A promoted model pointer and a complete inference batch: everything scoring would need."""
    store = LocalObjectStore(root=str(tmp_path / "store"))
    store.put_json(
        f"{MODELS_PREFIX}/{CURRENT}",
        {
            "version": "v1",
            "prefix": "models/mnist/v1",
            "model": "models/mnist/v1/model",
            "held_out_accuracy": 0.9,
        },
    )
    write_batch(tmp_path / "store" / "inference" / "never-added", n=10)
    (tmp_path / "store" / "inference" / "never-added" / "_SUCCESS").touch()
    return store


def score(tmp_path: Path, store: LocalObjectStore, context: dg.AssetExecutionContext) -> str:
    backend = LocalProcessBackend(work_dir=str(tmp_path / "compute"))
    with pytest.raises(dg.Failure) as failure:
        mnist_predictions(
            context, storage=store, scoring_compute=backend, prediction_checks=PredictionChecks()
        )
    assert not (tmp_path / "compute").exists() or not any((tmp_path / "compute").iterdir()), (
        "a compute job was started"
    )
    assert not (tmp_path / "store" / "predictions").exists(), "predictions were published"
    return str(failure.value.description)


def test_a_partition_never_added_fails_before_any_work(tmp_path: Path, store: LocalObjectStore) -> None:
    with dg.instance_for_test() as instance:
        context = dg.build_asset_context(partition_key="never-added", instance=instance)
        message = score(tmp_path, store, context)
    assert "'never-added' is not a partition of 'inference_batches'" in message, message
    assert "addDynamicPartition" in message and "nothing was scored" in message


def test_a_run_without_a_partition_fails_saying_how_to_launch_it(
    tmp_path: Path, store: LocalObjectStore
) -> None:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(INFERENCE_BATCHES, ["never-added"])
        message = score(tmp_path, store, dg.build_asset_context(instance=instance))
    assert "dagster/partition=<batch folder under inference/>" in message and INFERENCE_BATCHES in message
    assert "non-partitioned run" not in message


def test_a_model_whose_result_cannot_be_built_is_not_promoted(tmp_path: Path) -> None:
    """models/mnist/current.json moves last: metrics that pass the threshold but cannot be reported
    (here a confusion matrix that is not one) fail the step and leave scoring on the previous model."""
    store = LocalObjectStore(root=str(tmp_path / "store"))
    store.put_json(f"{RAW_PREFIX}/{CURRENT}", {"version": "raw1", "prefix": "raw/mnist/raw1"})
    config = TrainingConfig()
    version = model_version("raw1", config.params())
    store.put_json(
        f"{model_version_prefix(version)}/metrics.json",
        {
            "held_out_accuracy": 0.99,
            "log_loss": 0.1,
            "train_seconds": 1.0,
            "n_train": 100,
            "n_held_out": 10,
            "confusion_matrix": "not a matrix",
        },
    )
    with dg.instance_for_test() as instance, pytest.raises(ValueError, match="could not convert"):
        mnist_model(
            dg.build_asset_context(instance=instance),
            config=config,
            storage=store,
            training_compute=LocalProcessBackend(work_dir=str(tmp_path / "compute")),
            quality=QualityGate(min_accuracy=0.5),
        )
    assert not store.exists(f"{MODELS_PREFIX}/{CURRENT}"), "a model was promoted by a failed step"
