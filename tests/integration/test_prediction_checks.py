"""The checks on mnist_predictions through `materialize()` with local resources, on batches the tests make:
quiet on a batch like the training data, warnings (never a failed run) on a skewed batch, on too many
low-confidence predictions and on a predictions file that lost rows."""

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from assets.model import mnist_model
from assets.prediction_checks import DRIFT_CHECK, LOW_CONFIDENCE_CHECK, ROW_COUNT_CHECK
from assets.predictions import mnist_predictions
from assets.raw_mnist import raw_mnist
from resources.prediction_checks import PredictionChecks
from tests.integration.test_assets import Env


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory: pytest.TempPathFactory, synthetic_source: Path) -> Path:
    """A store holding raw MNIST and a promoted model (trained once for the module)."""
    env = Env(tmp_path_factory.mktemp("trained"), synthetic_source)
    assert env.materialize([raw_mnist, mnist_model]).success
    return env.root


@pytest.fixture
def env(tmp_path: Path, synthetic_source: Path, trained_store: Path) -> Env:
    shutil.copytree(trained_store, tmp_path / "store")
    return Env(tmp_path, synthetic_source)


def evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_a_batch_like_the_training_data_passes_every_check(env: Env) -> None:
    env.add_batch("b1", n=400)
    result = env.materialize([mnist_predictions], partition="b1")
    assert result.success
    found = evaluations(result)
    assert set(found) == {DRIFT_CHECK, LOW_CONFIDENCE_CHECK, ROW_COUNT_CHECK}
    assert all(e.passed for e in found.values()), {n: e.description for n, e in found.items()}
    assert all(e.severity == dg.AssetCheckSeverity.WARN and not e.blocking for e in found.values())
    assert all(e.partition == "b1" for e in found.values()), "one evaluation per batch"
    drift = found[DRIFT_CHECK].metadata
    assert float(drift["psi"].value) < 0.25  # type: ignore[arg-type]
    assert drift["batch"].value == "b1"
    model = result.asset_materializations_for_node("mnist_predictions")[0].metadata["model_version"].value
    assert drift["model_version"].value == model
    assert "data:image/png;base64," in str(drift["shares_chart"].value)
    assert found[ROW_COUNT_CHECK].metadata["images"].value == 400


def test_a_skewed_batch_warns_of_drift_without_failing_the_run(env: Env) -> None:
    env.add_batch("ones-and-sevens", n=200, digits=[1, 7])
    result = env.materialize([mnist_predictions], partition="ones-and-sevens")
    assert result.success, "a warning never fails the run"
    drift = evaluations(result)[DRIFT_CHECK]
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN
    assert float(drift.metadata["psi"].value) > 0.25  # type: ignore[arg-type]
    assert drift.description is not None and "> 0.25" in drift.description
    assert result.asset_materializations_for_node("mnist_predictions"), "the predictions are still published"


def test_the_drift_threshold_comes_from_the_resource(env: Env) -> None:
    env.add_batch("b1", n=400)
    env.checks = PredictionChecks(drift_psi_threshold=1e-6)
    drift = evaluations(env.materialize([mnist_predictions], partition="b1"))[DRIFT_CHECK]
    assert not drift.passed and drift.metadata["threshold"].value == 1e-6


def test_too_many_low_confidence_predictions_warn(env: Env) -> None:
    env.add_batch("b1", n=100)
    env.checks = PredictionChecks(low_confidence_probability=1.0, low_confidence_max_share=0.5)
    result = env.materialize([mnist_predictions], partition="b1")
    assert result.success
    low = evaluations(result)[LOW_CONFIDENCE_CHECK]
    assert not low.passed and low.severity == dg.AssetCheckSeverity.WARN
    assert low.metadata["low_confidence_share"].value == 1.0
    assert low.description is not None and "100 of 100 predictions" in low.description


def test_a_predictions_file_that_lost_rows_warns_with_the_count_from_the_idx_headers(env: Env) -> None:
    env.add_batch("b1", n=60)
    assert env.materialize([mnist_predictions], partition="b1").success
    csv = env.root / "predictions" / "b1" / "predictions.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(lines[:-5]) + "\n")  # summary.json still says 60 images
    # Nothing changed for scoring: the stored predictions are reused and checked again.
    result = env.materialize([mnist_predictions], partition="b1")
    meta = result.asset_materializations_for_node("mnist_predictions")[0].metadata
    assert str(meta["scoring"].value).startswith("reused")
    rows = evaluations(result)[ROW_COUNT_CHECK]
    assert not rows.passed and rows.severity == dg.AssetCheckSeverity.WARN
    assert rows.metadata["rows"].value == 55 and rows.metadata["images"].value == 60
    assert rows.description == "55 rows for 60 images in 1 file(s): 5 missing"


def test_each_batch_says_which_model_scored_it_and_the_table_shows_the_recent_ones(env: Env) -> None:
    env.add_batch("b1", n=20)
    first = env.materialize([mnist_predictions], partition="b1")
    old = str(first.asset_materializations_for_node("mnist_predictions")[0].metadata["model_version"].value)
    # Another model is promoted (the same files under another version: scoring behaves the same).
    models = env.root / "models" / "mnist"
    shutil.copytree(models / old, models / "model-b")
    current = json.loads((models / "current.json").read_text())
    (models / "current.json").write_text(
        json.dumps(
            {
                **current,
                "version": "model-b",
                "prefix": "models/mnist/model-b",
                "model": "models/mnist/model-b/model",
            }
        )
    )
    env.add_batch("b2", n=20)
    second = env.materialize([mnist_predictions], partition="b2")
    meta = second.asset_materializations_for_node("mnist_predictions")[0].metadata
    assert meta["model_version"].value == "model-b"
    table = str(meta["models_of_recent_batches"].value)
    assert table.splitlines()[0] == "| batch | scored by model | scored |"
    assert table.splitlines()[2].startswith("| b2 | model-b (promoted) | now |")
    assert table.splitlines()[3].startswith(f"| b1 | {old} | ")
