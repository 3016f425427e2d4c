"""Rescoring when the promoted model changes: `rescore_on_new_model`, for MNIST_RESCORE_ON_NEW_MODEL=recent:<N>.

Each tick reads which model is promoted (`models/mnist/current.json`) and which model scored each of the N
batches scored most recently (the `model_version` of their latest mnist_predictions materialization,
from the instance's event log). Every one of them scored by another model gets one score_batch run:
run key `<batch>@<model version>`, so a batch is requested at most once per model version, and the
cursor remembers the batches requested for the promoted model until their runs record new predictions.
The runs queue in the concurrency pool of the scoring compute target (orchestration/step_policies.py)
like any scoring, so rescoring never takes more scoring slots than that pool's limit allows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import dagster as dg

from assets.layout import CURRENT, MODELS_PREFIX
from assets.predictions import INFERENCE_BATCHES, mnist_predictions
from assets.scoring_history import ScoredBatch, recent_batches
from orchestration.jobs import SCORE_JOB
from resources.storage import ObjectStore

RESCORE_SENSOR = "rescore_on_new_model"
# Tags of the runs requested: why the run was made, and which models are involved (the run list shows them).
TRIGGER_TAG = "mnist/trigger"
MODEL_TAG = "mnist/model_version"
PREVIOUS_MODEL_TAG = "mnist/previous_model_version"
# Seconds between ticks: a model change is acted upon within this long.
INTERVAL_SECONDS = 30


@dataclass
class RescoreCursor:
    """The promoted model the last tick saw, and the batches already requested for it."""

    model: str | None = None
    requested: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str | None) -> RescoreCursor:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(model=data["model"], requested=list(data["requested"]))

    def dump(self) -> str:
        return json.dumps({"model": self.model, "requested": self.requested}, separators=(",", ":"))


def rescore_sensor(recent: int, interval_seconds: int = INTERVAL_SECONDS) -> dg.SensorDefinition:
    """The sensor that rescores the `recent` batches scored most recently once another model is promoted."""

    @dg.sensor(
        name=RESCORE_SENSOR,
        job_name=SCORE_JOB,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"When a new model is promoted, requests one score_batch run for each of the {recent} batch(es) "
            "scored most recently by another model (run key <batch>@<model version>: once per batch and model). "
            "The runs queue in the scoring compute's concurrency pool. Set by MNIST_RESCORE_ON_NEW_MODEL."
        ),
        required_resource_keys={"storage"},
    )
    def rescore(context: dg.SensorEvaluationContext, **_called_with: object) -> dg.SensorResult:
        store: ObjectStore = context.resources.storage
        cursor = RescoreCursor.parse(context.cursor)
        pointer = f"{MODELS_PREFIX}/{CURRENT}"
        if not store.exists(pointer):
            return dg.SensorResult(
                skip_reason=dg.SkipReason(f"no model is promoted yet ({store.uri(pointer)} does not exist)"),
                cursor=cursor.dump(),
            )
        model = str(store.get_json(pointer)["version"])
        requested = cursor.requested if cursor.model == model else []
        batches = recent_batches(context.instance, mnist_predictions.key, recent)
        stale = [
            b
            for b in batches
            if b.model_version != model
            and b.batch not in requested
            and context.instance.has_dynamic_partition(INFERENCE_BATCHES, b.batch)
        ]
        if not stale:
            return dg.SensorResult(
                skip_reason=dg.SkipReason(_nothing_to_do(model, recent, batches, requested)),
                cursor=RescoreCursor(model, requested).dump(),
            )
        for b in stale:
            context.log.info(
                f"{b.batch}: scored by model {b.model_version or '(unknown)'}, model {model} is promoted: rescoring"
            )
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"{b.batch}@{model}",
                    partition_key=b.batch,
                    tags={TRIGGER_TAG: "new_model", MODEL_TAG: model, PREVIOUS_MODEL_TAG: b.model_version},
                )
                for b in stale
            ],
            # Only the batches still among the most recent need remembering.
            cursor=RescoreCursor(model, [*requested, *(b.batch for b in stale)][-recent * 4 :]).dump(),
        )

    return rescore


def _nothing_to_do(model: str, recent: int, batches: list[ScoredBatch], requested: list[str]) -> str:
    if not batches:
        return f"model {model} is promoted and no batch has been scored yet"
    current = [b.batch for b in batches if b.model_version == model]
    waiting = [b.batch for b in batches if b.model_version != model and b.batch in requested]
    parts = []
    if current:
        parts.append(f"scored by it: {', '.join(current)}")
    if waiting:
        parts.append(f"rescoring requested already: {', '.join(waiting)}")
    gone = [b.batch for b in batches if b.batch not in current and b.batch not in waiting]
    if gone:
        parts.append(f"no longer a partition of {INFERENCE_BATCHES}: {', '.join(gone)}")
    return (
        f"nothing to rescore: model {model} is promoted; of the {len(batches)} most recently scored batch(es) "
        f"(at most {recent}), " + "; ".join(parts)
    )
