"""The three assets through `materialize()` with local resources, on data the tests make."""

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from assets.model import ACCURACY_CHECK, TrainingConfig, mnist_model
from assets.predictions import INFERENCE_BATCHES, mnist_predictions
from assets.raw_mnist import RawMnistConfig, raw_mnist
from resources.compute import LocalProcessBackend
from resources.mnist_source import MNIST_FILES, MnistSource
from resources.prediction_checks import PredictionChecks
from resources.quality import QualityGate
from resources.storage import LocalObjectStore
from tests.support.synthetic import write_batch, write_source
from workload.mnist_idx import encode_idx

SMALL = TrainingConfig(pca_components=20, kernel_components=200)


class Env:
    def __init__(self, tmp_path: Path, source: Path) -> None:
        self.tmp = tmp_path
        self.source = source
        self.storage = LocalObjectStore(root=str(tmp_path / "store"))
        self.instance = dg.DagsterInstance.ephemeral()
        self.min_accuracy = 0.8
        self.checks = PredictionChecks()

    @property
    def root(self) -> Path:
        return Path(self.storage.root)

    def resources(self) -> dict[str, Any]:
        return {
            "storage": self.storage,
            "training_compute": LocalProcessBackend(work_dir=str(self.tmp / "compute")),
            "scoring_compute": LocalProcessBackend(work_dir=str(self.tmp / "compute")),
            "ingest_compute": LocalProcessBackend(work_dir=str(self.tmp / "compute")),
            "mnist_source": MnistSource(location=str(self.source)),
            "quality": QualityGate(min_accuracy=self.min_accuracy),
            "prediction_checks": self.checks,
        }

    def add_batch(self, batch: str, n: int = 50, digits: Sequence[int] = range(10)) -> None:
        write_batch(self.root / "inference" / batch, n=n, digits=digits)
        (self.root / "inference" / batch / "_SUCCESS").touch()
        self.instance.add_dynamic_partitions(INFERENCE_BATCHES, [batch])

    def materialize(
        self, assets: list[dg.AssetsDefinition], config: TrainingConfig = SMALL, partition: str | None = None
    ) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            assets,
            resources=self.resources(),
            instance=self.instance,
            partition_key=partition,
            run_config=dg.RunConfig(ops={"mnist_model": config}) if mnist_model in assets else None,
            raise_on_error=False,
        )

    def jobs(self) -> int:
        jobs = self.tmp / "compute" / "jobs"
        return len(list(jobs.iterdir())) if jobs.exists() else 0


def error_text(result: dg.ExecuteInProcessResult) -> str:
    failures = result.get_step_failure_events()
    assert failures, "expected a step failure"
    error = failures[0].step_failure_data.error
    assert error is not None
    return error.to_string()


@pytest.fixture
def env(tmp_path: Path, synthetic_source: Path) -> Env:
    return Env(tmp_path, synthetic_source)


def test_pipeline_end_to_end(env: Env) -> None:
    env.add_batch("b1", n=50)
    result = env.materialize([raw_mnist, mnist_model, mnist_predictions], partition="b1")
    assert result.success

    raw = result.asset_materializations_for_node("raw_mnist")[0].metadata
    assert raw["train_images"].value == 600 and raw["held_out_images"].value == 200
    assert "data:image/png;base64," in str(raw["sample_digits"].value)

    model = result.asset_materializations_for_node("mnist_model")[0].metadata
    assert float(model["held_out_accuracy"].value) >= 0.8  # type: ignore[arg-type]
    assert model["training"].value == "fresh"
    check = result.get_asset_check_evaluations()[0]
    assert check.check_name == ACCURACY_CHECK and check.passed
    version = model["version"].value
    assert (env.root / "models" / "mnist" / str(version) / "model" / "MLmodel").is_file()

    preds = result.asset_materializations_for_node("mnist_predictions")[0].metadata
    assert preds["images"].value == 50
    rows = (env.root / "predictions" / "b1" / "predictions.csv").read_text().splitlines()
    assert rows[0] == "source_file,index,predicted_label,probability"
    assert len(rows) == 51
    file, index, label, prob = rows[1].split(",")
    assert file == "images.idx3-ubyte.gz" and index == "0" and 0 <= int(label) <= 9 and 0 < float(prob) <= 1


def test_unchanged_inputs_do_not_retrain(env: Env) -> None:
    assert env.materialize([raw_mnist, mnist_model]).success
    jobs = env.jobs()
    again = env.materialize([raw_mnist, mnist_model])
    assert again.success
    meta = again.asset_materializations_for_node("mnist_model")[0].metadata
    assert str(meta["training"].value).startswith("reused")
    assert env.jobs() == jobs, "no compute job for an unchanged model"
    # Different hyperparameters are a different model.
    changed = env.materialize(
        [raw_mnist, mnist_model], config=TrainingConfig(pca_components=20, kernel_components=150)
    )
    assert changed.asset_materializations_for_node("mnist_model")[0].metadata["training"].value == "fresh"


def test_model_below_threshold_is_not_promoted_and_blocks_scoring(env: Env) -> None:
    env.add_batch("b1")
    assert env.materialize([raw_mnist, mnist_model]).success
    current = (env.root / "models" / "mnist" / "current.json").read_text()
    env.min_accuracy = 0.99
    weak = TrainingConfig(pca_components=5, kernel_components=50, C=0.01)
    result = env.materialize([raw_mnist, mnist_model, mnist_predictions], config=weak, partition="b1")
    assert not result.success
    evaluation = result.get_asset_check_evaluations()[0]
    assert not evaluation.passed
    assert (env.root / "models" / "mnist" / "current.json").read_text() == current, (
        "the good model stays promoted"
    )
    assert not result.asset_materializations_for_node("mnist_predictions")
    assert not (env.root / "predictions").exists()


def test_corrupt_source_file_leaves_previous_raw_intact(env: Env, tmp_path: Path) -> None:
    assert env.materialize([raw_mnist]).success
    pointer = (env.root / "raw" / "mnist" / "current.json").read_text()
    before = sorted(p.relative_to(env.root) for p in env.root.rglob("*"))

    bad = tmp_path / "bad-source"
    shutil.copytree(env.source, bad)
    labels = (bad / MNIST_FILES[1]).read_bytes()
    (bad / MNIST_FILES[1]).write_bytes(labels[: len(labels) - 20])  # truncated gzip
    write_md5sums(bad)
    env.source = bad
    result = env.materialize([raw_mnist])
    assert not result.success
    assert "train-labels-idx1-ubyte.gz: expected a complete gzip stream" in error_text(result)
    assert (env.root / "raw" / "mnist" / "current.json").read_text() == pointer
    assert sorted(p.relative_to(env.root) for p in env.root.rglob("*")) == before, "nothing new was stored"


def test_mismatched_counts_and_wrong_checksum(env: Env, tmp_path: Path) -> None:
    bad = tmp_path / "mismatch"
    shutil.copytree(env.source, bad)
    import numpy as np

    (bad / MNIST_FILES[3]).write_bytes(encode_idx(np.zeros(199, np.uint8)))  # 200 images, 199 labels
    write_md5sums(bad)
    env.source = bad
    result = env.materialize([raw_mnist])
    assert (
        "t10k-labels-idx1-ubyte.gz: expected 200 labels (one per image in t10k-images-idx3-ubyte.gz), found 199"
        in error_text(result)
    )

    (bad / MNIST_FILES[0]).write_bytes(b"tampered")  # md5sums now disagree with the file
    result = env.materialize([raw_mnist])
    assert "train-images-idx3-ubyte.gz: checksum mismatch" in error_text(result)
    assert not (env.root / "raw").exists()


def test_bad_inference_file_fails_that_batch_only(env: Env) -> None:
    import numpy as np

    env.add_batch("good")
    env.add_batch("bad")
    assert env.materialize([raw_mnist, mnist_model, mnist_predictions], partition="good").success
    assert env.materialize([mnist_predictions], partition="bad").success
    previous = (env.root / "predictions" / "bad" / "predictions.csv").read_bytes()

    (env.root / "inference" / "bad" / "cifar.idx3-ubyte").write_bytes(
        encode_idx(np.zeros((3, 32, 32), np.uint8), gzip_level=None)
    )
    result = env.materialize([mnist_predictions], partition="bad")
    assert not result.success
    assert "cifar.idx3-ubyte: expected 28x28 images, found 32x32 images" in error_text(result)
    assert (env.root / "predictions" / "bad" / "predictions.csv").read_bytes() == previous, (
        "earlier predictions intact"
    )
    assert env.materialize([mnist_predictions], partition="good").success


def test_batch_with_foreign_file_or_no_images(env: Env) -> None:
    env.add_batch("b1")
    assert env.materialize([raw_mnist, mnist_model, mnist_predictions], partition="b1").success
    (env.root / "inference" / "b1" / "notes.txt").write_text("hello")
    result = env.materialize([mnist_predictions], partition="b1")
    assert "notes.txt: expected an IDX image file" in error_text(result)

    (env.root / "inference" / "empty").mkdir(parents=True)
    (env.root / "inference" / "empty" / "_SUCCESS").touch()
    env.instance.add_dynamic_partitions(INFERENCE_BATCHES, ["empty"])
    result = env.materialize([mnist_predictions], partition="empty")
    assert "inference batch 'empty' has no image files" in error_text(result)


def test_scoring_without_a_model_says_what_to_do(env: Env) -> None:
    env.add_batch("b1")
    result = env.materialize([mnist_predictions], partition="b1")
    assert "No model has passed the accuracy check yet: materialize mnist_model first" in error_text(result)


def write_md5sums(directory: Path) -> None:
    import hashlib

    (directory / "md5sums").write_text(
        "".join(f"{hashlib.md5((directory / n).read_bytes()).hexdigest()}  {n}\n" for n in MNIST_FILES)
    )


def test_synthetic_source_helper_is_deterministic(tmp_path: Path) -> None:
    assert write_source(tmp_path / "a") == write_source(tmp_path / "b")


def test_training_set_dropped_in_storage_is_used(env: Env) -> None:
    for name in [*MNIST_FILES, "md5sums"]:
        env.storage.put_bytes(f"training/s1/{name}", (env.source / name).read_bytes())
    result = dg.materialize(
        [raw_mnist, mnist_model],
        resources=env.resources(),
        instance=env.instance,
        run_config=dg.RunConfig(
            ops={"raw_mnist": RawMnistConfig(training_set="training/s1"), "mnist_model": SMALL}
        ),
    )
    assert result.success
    raw = result.asset_materializations_for_node("raw_mnist")[0].metadata
    assert str(raw["source"].value).endswith("training/s1")

    env.storage.put_bytes("training/s2/train-images-idx3-ubyte.gz", b"x")
    bad = dg.materialize(
        [raw_mnist],
        resources=env.resources(),
        instance=env.instance,
        run_config=dg.RunConfig(ops={"raw_mnist": RawMnistConfig(training_set="training/s2")}),
        raise_on_error=False,
    )
    assert "training/s2/md5sums: missing" in error_text(bad)
