from typing import Any

import dagster as dg

from resources.compute import ComputeBackend, WorkloadRequest, idempotency_key
from resources.prediction_checks import PredictionChecks
from resources.storage import ObjectStore

from . import layout
from .batch_ids import batch_id_problem
from .layout import BATCH_MARKER, CURRENT, MODELS_PREFIX, SCORED_WITH, batch_prefix, predictions_prefix
from .model import mnist_model
from .pictures import bar_chart, markdown_image
from .prediction_checks import check_results, check_specs
from .scoring_history import ScoredBatch, models_table, recent_batches
from .serving import mnist_model_serving
from .versions import SCORE_CODE_VERSION

INFERENCE_BATCHES = "inference_batches"
inference_batches = dg.DynamicPartitionsDefinition(name=INFERENCE_BATCHES)
# The concurrency pool of scoring work; the instance limits how many runs use it at once
# (pool_limits in instance/*/dagster.yaml).
SCORING_POOL = "mnist-scoring"
# Rows of the table of recent batches and the model that scored each, in every materialization's metadata.
RECENT_BATCHES_SHOWN = 20


def check_batch_id(batch_id: str) -> str:
    """`batch_id` if it is a valid inference batch id (the rules the sensors and the gateway apply too),
    else a Failure saying what is wrong with it."""
    problem = batch_id_problem(batch_id)
    if problem is not None:
        raise dg.Failure(description=problem)
    return batch_id


@dg.asset(
    group_name="mnist",
    # The promoted model (models/mnist/current.json), as the serving asset rolled it out (with AzureML,
    # what the batch deployment serves).
    deps=[mnist_model, mnist_model_serving],
    partitions_def=inference_batches,
    code_version=SCORE_CODE_VERSION,
    kinds={"scikitlearn", "csv"},
    tags={"layer": "predictions"},
    pool=SCORING_POOL,
    check_specs=check_specs("mnist_predictions", inference_batches),
)
def mnist_predictions(
    context: dg.AssetExecutionContext,
    storage: ObjectStore,
    scoring_compute: ComputeBackend,
    prediction_checks: PredictionChecks,
) -> dg.MaterializeResult:
    """Predicted digits for one inference batch (one partition per folder under `inference/`).

    Every image in the batch's IDX files gets a row in `predictions/<batch>/predictions.csv`: the
    source file, the image's index in it, the predicted digit and the model's probability for it.
    Scored with the promoted model (`models/mnist/current.json`, the last one that passed the accuracy
    check). A batch with a file that is not an MNIST-shaped image set fails alone, with the file named,
    and leaves any earlier predictions for that batch untouched.

    Each materialization is checked (warnings, never a failed run): the predicted digits against the
    training labels' distribution, the share of low-confidence predictions, one row per image. Its
    metadata says which model version scored the batch (`model_version`).
    """
    _require_added_partition(context)
    batch_id = check_batch_id(context.partition_key)
    if not storage.exists(f"{MODELS_PREFIX}/{CURRENT}"):
        raise dg.Failure("No model has passed the accuracy check yet: materialize mnist_model first.")
    model = storage.get_json(f"{MODELS_PREFIX}/{CURRENT}")
    source = batch_prefix(batch_id)
    objects = [o for o in storage.list(source + "/") if not o.name.endswith("/" + BATCH_MARKER)]
    if not objects:
        raise dg.Failure(f"inference batch {batch_id!r} has no image files under {storage.uri(source)}")
    out = predictions_prefix(batch_id)
    version = _digest(model["version"], SCORE_CODE_VERSION, *(f"{o.name}@{o.etag}" for o in objects))
    stamp = f"{out}/{SCORED_WITH}"
    if storage.exists(stamp) and storage.get_json(stamp).get("version") == version:
        context.log.info(
            f"Not rescoring batch {batch_id!r}: same model ({model['version']}), same files and same scoring code "
            "as the stored predictions."
        )
        return _result(
            storage,
            out,
            model["version"],
            version,
            {
                "scoring": "reused (model, files and code unchanged)",
                **_recent_models(context, batch_id, model),
            },
            check_results(
                storage=storage,
                predictions=out,
                model=model,
                batch=batch_id,
                files=objects,
                expect=prediction_checks,
            ),
        )
    request = WorkloadRequest(
        task="score",
        idempotency_key=idempotency_key(context, "score"),
        inputs={"model": model["model"], "batch": source},
        outputs={"predictions": out},
        immutable_inputs=frozenset({"model"}),
    )
    result = scoring_compute.run(context, request, storage)
    # The summary is read (and the result built) before the stamp vouches for these predictions.
    materialized = _result(
        storage,
        out,
        model["version"],
        version,
        {
            "scoring": "fresh",
            "compute_job": result.job_id,
            **result.metadata,
            **_recent_models(context, batch_id, model),
        },
        check_results(
            storage=storage,
            predictions=out,
            model=model,
            batch=batch_id,
            files=objects,
            expect=prediction_checks,
        ),
    )
    storage.put_json(stamp, layout.scored_with(version, model["version"], objects))
    return materialized


def _require_added_partition(context: dg.AssetExecutionContext) -> None:
    """Fail before any work unless the run names a batch that is a partition of inference_batches.

    Dagster checks the partition only when the step records its output, after scoring has published
    `predictions/<batch>/`. The instance's run coordinator refuses such launches already; this
    covers runs that do not pass through it (in-process execution)."""
    if not context.has_partition_key:
        raise dg.Failure(
            f"mnist_predictions scores one inference batch, the run's partition, and this run has none: "
            f"launch it with the tag dagster/partition=<batch folder under inference/>, a partition of "
            f"{INFERENCE_BATCHES!r}."
        )
    batch = context.partition_key
    if not context.instance.has_dynamic_partition(INFERENCE_BATCHES, batch):
        raise dg.Failure(
            f"inference batch {batch!r} is not a partition of {INFERENCE_BATCHES!r}, so nothing was scored: "
            f'add it (GraphQL addDynamicPartition(partitionsDefName: "{INFERENCE_BATCHES}", partitionKey: '
            f'"{batch}"), or the UI\'s partition picker), then launch again.'
        )


def _recent_models(context: dg.AssetExecutionContext, batch_id: str, model: dict[str, Any]) -> dict[str, Any]:
    """Which model scored this batch and the batches scored before it (the UI shows the latest table)."""
    earlier = recent_batches(context.instance, context.asset_key, RECENT_BATCHES_SHOWN)
    batches = [ScoredBatch(batch_id, model["version"]), *(b for b in earlier if b.batch != batch_id)]
    return {"models_of_recent_batches": models_table(batches[:RECENT_BATCHES_SHOWN], model["version"])}


def _result(
    storage: ObjectStore,
    out: str,
    model_version: str,
    version: str,
    extra: dict[str, Any],
    checks: list[dg.AssetCheckResult],
) -> dg.MaterializeResult:
    summary = storage.get_json(f"{out}/summary.json")
    counts = [int(summary["label_counts"][str(d)]) for d in range(10)]
    return dg.MaterializeResult(
        metadata={
            "images": dg.MetadataValue.int(int(summary["images"])),
            "images_per_second": dg.MetadataValue.float(round(float(summary["images_per_second"]), 1)),
            "mean_probability": dg.MetadataValue.float(round(float(summary["mean_probability"]), 4)),
            "low_confidence (p < 0.5)": int(summary["low_confidence"]),
            "label_distribution": markdown_image(
                bar_chart(counts, [str(d) for d in range(10)]), "predicted digits"
            ),
            "files": dg.MetadataValue.json(summary["files"]),
            "model_version": model_version,
            "location": dg.MetadataValue.path(storage.uri(f"{out}/predictions.csv")),
            **extra,
        },
        data_version=dg.DataVersion(version),
        check_results=checks,
    )


def _digest(*parts: str) -> str:
    import hashlib

    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
