"""Rescoring under the real Dagster daemon: with MNIST_RESCORE_ON_NEW_MODEL=recent:2, promoting another model
makes rescore_on_new_model queue score_batch runs for the two batches scored most recently, and only those;
the runs go through the instance's run queue and pools like any scoring, and the predictions then say
which model made them."""

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from assets.predictions import INFERENCE_BATCHES, mnist_predictions
from assets.scoring_history import recent_batches
from tests.support.daemon import Daemon, wait_for
from tests.support.synthetic import write_batch, write_source

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
BATCHES = ("b1", "b2", "b3")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A promoted model (trained by `dagster job execute`), three complete batches, and the daemon's settings."""
    write_source(tmp_path / "source")
    storage = tmp_path / "storage"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE", "MNIST_", "DAGSTER_"))}
    env.update(
        MNIST_DATA_DIR=str(storage),
        MNIST_WORK_DIR=str(tmp_path / "compute"),
        MNIST_SOURCE=str(tmp_path / "source"),
        MNIST_MIN_ACCURACY="0.8",
        MNIST_SENSOR_INTERVAL="1",
        MNIST_RESCORE_ON_NEW_MODEL="recent:2",
    )
    daemon = Daemon(tmp_path / "dagster_home", env)
    config = tmp_path / "train.yaml"
    config.write_text(
        "ops:\n  mnist_model:\n    config:\n      pca_components: 20\n      kernel_components: 200\n"
    )
    daemon.cli(
        "job", "execute", "-j", "train_model", "-c", str(config), target=("-m", "orchestration.definitions")
    )
    for batch in BATCHES:
        write_batch(storage / "inference" / batch, n=30)
        (storage / "inference" / batch / "_SUCCESS").touch()
    yield {"daemon": daemon, "storage": storage}
    daemon.stop()


def runs(instance: dg.DagsterInstance, trigger: str | None = None) -> list[dg.DagsterRun]:
    found = [r for r in instance.get_runs() if r.job_name == "score_batch"]
    return [r for r in found if trigger is None or r.tags.get("mnist/trigger") == trigger]


def succeeded(found: list[dg.DagsterRun], n: int) -> bool:
    return len(found) >= n and all(r.status == dg.DagsterRunStatus.SUCCESS for r in found)


def test_a_new_model_rescores_the_two_most_recent_batches_through_the_queue(site: dict[str, Any]) -> None:
    daemon: Daemon = site["daemon"]
    storage: Path = site["storage"]
    daemon.cli("sensor", "start", "inference_batch_sensor")
    daemon.start()
    instance = daemon.instance()
    wait_for(lambda: succeeded(runs(instance), 3), 240, "the three batches to be scored", daemon.log)
    models = storage / "models" / "mnist"
    old = json.loads((models / "current.json").read_text())
    assert not runs(instance, "new_model"), "nothing to rescore while the model is the same"
    most_recent = [b.batch for b in recent_batches(instance, mnist_predictions.key, 2)]

    # Another model is promoted (the same files under another version, as a retrain would move the pointer).
    shutil.copytree(models / old["version"], models / "model-b")
    promoted = {
        **old,
        "version": "model-b",
        "prefix": "models/mnist/model-b",
        "model": "models/mnist/model-b/model",
    }
    (models / "current.json.tmp").write_text(json.dumps(promoted))
    (models / "current.json.tmp").rename(models / "current.json")

    wait_for(lambda: succeeded(runs(instance, "new_model"), 2), 180, "the two rescoring runs", daemon.log)
    rescored = runs(instance, "new_model")
    assert sorted(r.tags["dagster/partition"] for r in rescored) == sorted(most_recent)
    assert {r.tags["dagster/run_key"] for r in rescored} == {f"{b}@model-b" for b in most_recent}
    assert {r.tags["mnist/previous_model_version"] for r in rescored} == {old["version"]}
    for batch in BATCHES:
        scored_with = json.loads((storage / "predictions" / batch / "_scored_with.json").read_text())
        assert scored_with["model"] == ("model-b" if batch in most_recent else old["version"]), batch
    assert set(instance.get_dynamic_partitions(INFERENCE_BATCHES)) == set(BATCHES)
