"""Retraining when drift persists: `drift_retrain_sensor`, for MNIST_DRIFT_RETRAIN_AFTER=<N>.

Each tick reads the history of the drift check of mnist_predictions (its evaluations, newest first,
from the instance's event log storage) and keeps each batch's latest verdict. When the N batches scored
most recently by the model that scored the newest one all failed the drift check, it requests one
train_model run for that model (run key `drift@<model version>`: never twice for one model, so a
retrain that reuses the identical model does not loop). Like a scheduled run, train_model retrains
only when raw MNIST, the training code or the hyperparameters changed (a new training set, a new
source), and otherwise says in its metadata that it reused the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import dagster as dg

from assets.prediction_checks import DRIFT_CHECK
from assets.predictions import mnist_predictions
from orchestration.jobs import TRAIN_JOB

DRIFT_RETRAIN_SENSOR = "drift_retrain_sensor"
DRIFT_CHECK_KEY = dg.AssetCheckKey(mnist_predictions.key, DRIFT_CHECK)
# Check evaluations read per tick: enough for N batches even when some were evaluated several times.
HISTORY = 500
TRIGGER_TAG = "mnist/trigger"
# Seconds between ticks: a drift streak is acted upon within this long.
INTERVAL_SECONDS = 30


@dataclass(frozen=True)
class DriftVerdict:
    """A batch's latest drift verdict: the model that scored it, whether it drifted, the PSI."""

    batch: str
    model_version: str
    drifted: bool
    psi: float
    record_id: int


def latest_verdicts(instance: dg.DagsterInstance) -> list[DriftVerdict]:
    """Each batch's latest evaluated drift verdict, newest first. An evaluation that could not compute a
    PSI (no training distribution recorded) is no verdict."""
    records = instance.event_log_storage.get_asset_check_execution_history(DRIFT_CHECK_KEY, limit=HISTORY)
    found: dict[str, DriftVerdict] = {}
    for record in records:  # newest first
        evaluation = record.event.asset_check_evaluation if record.event is not None else None
        if evaluation is None or "psi" not in evaluation.metadata:
            continue
        meta = evaluation.metadata
        batch = evaluation.partition or str(meta["batch"].value)
        if batch in found:
            continue
        found[batch] = DriftVerdict(
            batch=batch,
            model_version=str(meta["model_version"].value) if "model_version" in meta else "",
            drifted=not evaluation.passed,
            psi=float(meta["psi"].value),  # type: ignore[arg-type]
            record_id=record.id,
        )
    return list(found.values())


@dataclass
class DriftCursor:
    """The newest drift evaluation read, and the model versions a retrain was requested for."""

    newest: int = 0
    retrained: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str | None) -> DriftCursor:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(newest=int(data["newest"]), retrained=list(data["retrained"]))

    def dump(self) -> str:
        return json.dumps({"newest": self.newest, "retrained": self.retrained[-20:]}, separators=(",", ":"))


def drift_retrain_sensor(after: int, interval_seconds: int = INTERVAL_SECONDS) -> dg.SensorDefinition:
    """The sensor that requests train_model once the drift check failed on `after` consecutive batches."""

    @dg.sensor(
        name=DRIFT_RETRAIN_SENSOR,
        job_name=TRAIN_JOB,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Requests a train_model run when the drift check of mnist_predictions failed on the {after} batch(es) "
            "scored most recently by the current model (once per model version). Set by MNIST_DRIFT_RETRAIN_AFTER."
        ),
    )
    def drift_retrain(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        cursor = DriftCursor.parse(context.cursor)
        storage = context.instance.event_log_storage
        latest = storage.get_asset_check_execution_history(DRIFT_CHECK_KEY, limit=1)
        if context.cursor and (not latest or latest[0].id == cursor.newest):
            return dg.SensorResult(
                skip_reason=dg.SkipReason("no new drift check evaluation since the last tick"),
                cursor=cursor.dump(),
            )
        cursor.newest = latest[0].id if latest else 0
        decision = decide(latest_verdicts(context.instance), after, cursor.retrained)
        if isinstance(decision, str):
            return dg.SensorResult(skip_reason=dg.SkipReason(decision), cursor=cursor.dump())
        model, streak = decision
        cursor.retrained.append(model)
        summary = ", ".join(f"{v.batch} (PSI {v.psi:.2f})" for v in streak)
        context.log.info(
            f"drift on the last {after} batch(es) scored by model {model}: {summary}; retraining"
        )
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"drift@{model}",
                    tags={
                        TRIGGER_TAG: "drift",
                        "mnist/drifted_model_version": model,
                        "mnist/drifted_batches": ",".join(v.batch for v in streak)[:200],
                    },
                )
            ],
            cursor=cursor.dump(),
        )

    return drift_retrain


def decide(
    verdicts: list[DriftVerdict], after: int, retrained: list[str]
) -> tuple[str, list[DriftVerdict]] | str:
    """(model version, the drifted batches) when a retrain is due; otherwise why not, in words."""
    if not verdicts:
        return "no batch has a drift verdict yet"
    model = verdicts[0].model_version
    streak = [v for v in verdicts if v.model_version == model][:after]
    if len(streak) < after:
        return f"model {model} has scored {len(streak)} batch(es) with a drift verdict; a retrain needs drift on {after}"
    calm = [v for v in streak if not v.drifted]
    if calm:
        shown = ", ".join(f"{v.batch} (PSI {v.psi:.2f})" for v in calm)
        return (
            f"no persistent drift: of the last {after} batch(es) scored by model {model}, no drift on {shown}"
        )
    if model in retrained:
        return (
            f"drift persists on the last {after} batch(es) scored by model {model}, and a retrain was requested "
            "for it already (run key drift@" + model + "): waiting for a new model"
        )
    return model, streak
