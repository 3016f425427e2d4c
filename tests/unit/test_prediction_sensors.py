"""The two sensors that act on the predictions' history, through `build_sensor_context` on an in-process
instance: rescoring when the promoted model changes (once per batch and model, only the N most recent
batches), and retraining when the drift check failed on N consecutive batches. Every skip says why."""

from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from assets.layout import CURRENT, MODELS_PREFIX
from assets.prediction_checks import DRIFT_CHECK
from assets.predictions import INFERENCE_BATCHES, inference_batches, mnist_predictions
from orchestration.definitions import build_definitions
from orchestration.drift_retrain import DRIFT_RETRAIN_SENSOR, drift_retrain_sensor
from orchestration.rescoring import RESCORE_SENSOR, rescore_sensor
from orchestration.settings import Settings
from resources.storage import LocalObjectStore


class Ticker:
    """Evaluates a sensor tick after tick, carrying the cursor as the daemon would."""

    def __init__(self, sensor: dg.SensorDefinition, resources: dict[str, Any] | None = None) -> None:
        self.sensor = sensor
        self.resources = resources or {}
        self.cursor: str | None = None
        self.instance = dg.DagsterInstance.ephemeral()

    def tick(self) -> dg.SensorResult:
        context = dg.build_sensor_context(
            cursor=self.cursor, instance=self.instance, resources=self.resources
        )
        result = self.sensor(context)
        assert isinstance(result, dg.SensorResult)
        self.cursor = result.cursor
        return result


def requested(result: dg.SensorResult) -> list[str]:
    return [r.run_key or "" for r in result.run_requests or []]


def skip(result: dg.SensorResult) -> str:
    assert not result.run_requests, f"expected a skip, got {requested(result)}"
    return (result.skip_reason.skip_message or "") if result.skip_reason else ""


# ---- rescoring --------------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(root=str(tmp_path / "store"))


def promote(store: LocalObjectStore, version: str) -> None:
    prefix = f"{MODELS_PREFIX}/{version}"
    store.put_json(
        f"{MODELS_PREFIX}/{CURRENT}", {"version": version, "prefix": prefix, "model": f"{prefix}/model"}
    )


def scored(instance: dg.DagsterInstance, batch: str, model: str) -> None:
    """Record that `batch` was scored by `model`, as mnist_predictions' materialization does."""
    if not instance.has_dynamic_partition(INFERENCE_BATCHES, batch):
        instance.add_dynamic_partitions(INFERENCE_BATCHES, [batch])
    instance.report_runless_asset_event(
        dg.AssetMaterialization(mnist_predictions.key, partition=batch, metadata={"model_version": model})
    )


def test_rescoring_waits_for_a_promoted_model(store: LocalObjectStore) -> None:
    ticker = Ticker(rescore_sensor(3), {"storage": store})
    assert "no model is promoted yet" in skip(ticker.tick())


def test_a_new_model_rescores_the_n_most_recent_batches_once(store: LocalObjectStore) -> None:
    ticker = Ticker(rescore_sensor(3), {"storage": store})
    promote(store, "A")
    for batch in ("b1", "b2", "b3", "b4", "b5"):
        scored(ticker.instance, batch, "A")
    assert skip(ticker.tick()) == (
        "nothing to rescore: model A is promoted; of the 3 most recently scored batch(es) (at most 3), "
        "scored by it: b5, b4, b3"
    )

    promote(store, "B")
    result = ticker.tick()
    assert requested(result) == ["b5@B", "b4@B", "b3@B"], "only the 3 most recent, once each"
    first = (result.run_requests or [])[0]
    assert first.partition_key == "b5"
    assert first.tags["mnist/model_version"] == "B" and first.tags["mnist/previous_model_version"] == "A"
    assert first.tags["mnist/trigger"] == "new_model"

    # The runs are queued, not finished: the next tick does not ask again.
    assert "rescoring requested already: b5, b4, b3" in skip(ticker.tick())
    scored(ticker.instance, "b5", "B")
    reason = skip(ticker.tick())
    assert "scored by it: b5" in reason and "rescoring requested already: b4, b3" in reason

    # Another model: the most recent batches again, each once for that model.
    promote(store, "C")
    assert requested(ticker.tick()) == ["b5@C", "b4@C", "b3@C"]


def test_a_batch_that_is_no_longer_a_partition_is_not_rescored(store: LocalObjectStore) -> None:
    ticker = Ticker(rescore_sensor(2), {"storage": store})
    promote(store, "A")
    scored(ticker.instance, "b1", "A")
    scored(ticker.instance, "b2", "A")
    ticker.instance.delete_dynamic_partition(INFERENCE_BATCHES, "b2")
    promote(store, "B")
    assert requested(ticker.tick()) == ["b1@B"]
    assert f"no longer a partition of {INFERENCE_BATCHES}: b2" in skip(ticker.tick())


# ---- retraining on persistent drift -------------------------------------------------------------------------


def verdict(
    instance: dg.DagsterInstance,
    batch: str,
    model: str,
    drifted: bool,
    psi: float | None = None,
    evaluated: bool = True,
) -> None:
    """Score `batch` with a stand-in for mnist_predictions (same key, same partitioned drift check) that reports
    a drift verdict as the real asset does; not `evaluated`: a result without a PSI (no training distribution)."""
    metadata: dict[str, Any] = {"batch": batch, "model_version": model}
    if evaluated:
        metadata["psi"] = psi if psi is not None else (1.5 if drifted else 0.02)

    @dg.asset(
        name=mnist_predictions.key.path[-1],
        partitions_def=inference_batches,
        check_specs=[
            dg.AssetCheckSpec(DRIFT_CHECK, asset=mnist_predictions.key, partitions_def=inference_batches)
        ],
    )
    def stand_in() -> dg.MaterializeResult:
        check = dg.AssetCheckResult(
            check_name=DRIFT_CHECK, passed=not drifted, metadata=metadata, severity=dg.AssetCheckSeverity.WARN
        )
        return dg.MaterializeResult(metadata={"model_version": model}, check_results=[check])

    if not instance.has_dynamic_partition(INFERENCE_BATCHES, batch):
        instance.add_dynamic_partitions(INFERENCE_BATCHES, [batch])
    assert dg.materialize([stand_in], instance=instance, partition_key=batch).success


def test_drift_on_n_consecutive_batches_requests_one_retrain_per_model() -> None:
    ticker = Ticker(drift_retrain_sensor(3))
    assert skip(ticker.tick()) == "no batch has a drift verdict yet"

    verdict(ticker.instance, "b1", "A", drifted=True)
    verdict(ticker.instance, "b2", "A", drifted=True)
    verdict(ticker.instance, "b0", "A", drifted=True, evaluated=False)  # no training distribution: no verdict
    assert "model A has scored 2 batch(es) with a drift verdict; a retrain needs drift on 3" in skip(
        ticker.tick()
    )
    assert skip(ticker.tick()) == "no new drift check evaluation since the last tick"

    verdict(ticker.instance, "b3", "A", drifted=False, psi=0.03)
    verdict(ticker.instance, "b4", "A", drifted=True)
    verdict(ticker.instance, "b5", "A", drifted=True)
    assert (
        "no persistent drift: of the last 3 batch(es) scored by model A, no drift on b3 (PSI 0.03)"
        in skip(ticker.tick())
    )

    verdict(ticker.instance, "b6", "A", drifted=True, psi=2.0)
    result = ticker.tick()
    assert requested(result) == ["drift@A"]
    request = (result.run_requests or [])[0]
    assert request.tags["mnist/trigger"] == "drift" and request.tags["mnist/drifted_batches"] == "b6,b5,b4"

    # Drift goes on, but a retrain was requested for this model: no second one (a retrain that reuses the
    # identical model would otherwise be requested again and again).
    verdict(ticker.instance, "b7", "A", drifted=True)
    assert "a retrain was requested for it already (run key drift@A): waiting for a new model" in skip(
        ticker.tick()
    )

    # A new model starts its own count.
    verdict(ticker.instance, "b8", "B", drifted=True)
    assert "model B has scored 1 batch(es)" in skip(ticker.tick())


def test_a_batch_scored_again_counts_by_its_latest_verdict() -> None:
    ticker = Ticker(drift_retrain_sensor(2))
    verdict(ticker.instance, "b1", "A", drifted=True)
    verdict(ticker.instance, "b2", "A", drifted=True)
    verdict(ticker.instance, "b2", "A", drifted=False, psi=0.01)  # b2 rescored: no drift now
    assert "no drift on b2 (PSI 0.01)" in skip(ticker.tick())


def test_the_sensors_exist_only_when_their_settings_ask_for_them() -> None:
    def sensor_names(env: dict[str, str]) -> set[str]:
        defs = build_definitions(Settings.from_env(env))
        return {s.name for s in defs.sensors or []}

    assert not {RESCORE_SENSOR, DRIFT_RETRAIN_SENSOR} & sensor_names({})
    both = sensor_names({"MNIST_RESCORE_ON_NEW_MODEL": "recent:5", "MNIST_DRIFT_RETRAIN_AFTER": "3"})
    assert {RESCORE_SENSOR, DRIFT_RETRAIN_SENSOR} <= both
