import hashlib
import json

import dagster as dg
import numpy as np
from pydantic import Field

from resources.compute import ComputeBackend, WorkloadRequest, idempotency_key
from resources.quality import QualityGate
from resources.storage import ObjectStore

from .layout import CURRENT, MODELS_PREFIX, RAW_PREFIX, model_version_prefix
from .pictures import confusion_heatmap, markdown_image
from .raw_mnist import TRAINING_POOL, raw_mnist
from .versions import TRAIN_CODE_VERSION

ACCURACY_CHECK = "held_out_accuracy_above_threshold"


class TrainingConfig(dg.Config):
    """Hyperparameters of the classifier; changing any of them trains a new model version."""

    pca_components: int = Field(default=40, ge=5, le=400)
    kernel_components: int = Field(default=1000, ge=50, le=20000)
    gamma_scale: float = Field(default=1.0, gt=0)
    C: float = Field(default=30.0, gt=0)
    seed: int = 0
    force_retrain: bool = Field(default=False, description="Train even when an identical model exists.")

    def params(self) -> dict[str, int | float]:
        return {
            "pca_components": self.pca_components,
            "kernel_components": self.kernel_components,
            "gamma_scale": self.gamma_scale,
            "C": self.C,
            "seed": self.seed,
        }


def model_version(raw_version: str, params: dict[str, int | float]) -> str:
    """Identity of a model: the data it learns from, the training code, and the hyperparameters."""
    key = json.dumps({"raw": raw_version, "code": TRAIN_CODE_VERSION, "params": params}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dg.asset(
    group_name="mnist",
    deps=[raw_mnist],
    code_version=TRAIN_CODE_VERSION,
    kinds={"scikitlearn", "mlflow"},
    tags={"layer": "model"},
    pool=TRAINING_POOL,
    check_specs=[
        dg.AssetCheckSpec(
            ACCURACY_CHECK,
            asset="mnist_model",
            blocking=True,
            description="Held-out accuracy is at least the configured threshold (MNIST_MIN_ACCURACY); "
            "a model below it is never promoted and nothing downstream runs on it.",
        )
    ],
)
def mnist_model(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    storage: ObjectStore,
    training_compute: ComputeBackend,
    quality: QualityGate,
) -> dg.MaterializeResult:
    """The digit classifier: an MLflow model directory (deskew -> PCA -> RBF kernel map -> logistic regression).

    Trained by the compute backend on `raw/mnist` train split and judged on the held-out t10k split.
    Stored under `models/mnist/<version>/` (`model/` is the MLflow model an AzureML batch endpoint can
    serve as is; `metrics.json` holds accuracy, loss and the confusion matrix). The version is derived from
    the raw data version, the training code and the hyperparameters: materializing again with all three
    unchanged reuses the stored model instead of retraining, and says so. Only a model that passes the
    accuracy check becomes `models/mnist/current.json`, the model that scoring uses.
    """
    if not storage.exists(f"{RAW_PREFIX}/{CURRENT}"):
        raise dg.Failure(f"No raw MNIST in {storage.describe()}: materialize raw_mnist first.")
    raw = storage.get_json(f"{RAW_PREFIX}/{CURRENT}")
    params = config.params()
    version = model_version(raw["version"], params)
    if config.force_retrain:
        version = f"{version}-{context.run_id[:8]}"
    prefix = model_version_prefix(version)
    metrics_name = f"{prefix}/metrics.json"

    reused = storage.exists(metrics_name)
    if reused:
        context.log.info(
            f"Not retraining: model {version} was already trained from raw data {raw['version']} with code "
            f"{TRAIN_CODE_VERSION} and the same hyperparameters (set force_retrain to train anyway)."
        )
        job_meta: dict[str, dg.RawMetadataValue] = {
            "training": "reused (inputs, code and hyperparameters unchanged)"
        }
    else:
        request = WorkloadRequest(
            task="train",
            idempotency_key=idempotency_key(context, "train"),
            inputs={"raw": raw["prefix"]},
            immutable_inputs=frozenset({"raw"}),
            outputs={"model": prefix},
            params=params,
        )
        result = training_compute.run(context, request, storage)
        job_meta = {
            "training": "fresh",
            "compute_job": result.job_id,
            "wall_seconds": round(result.seconds, 2),
        }
        if result.job_url:
            job_meta["compute_job_url"] = dg.MetadataValue.url(result.job_url)
        # The backend may know better, e.g. an AzureML step reused by allow_reuse is not fresh training.
        job_meta.update(result.metadata)
    metrics = storage.get_json(metrics_name)

    accuracy = float(metrics["held_out_accuracy"])
    passed = accuracy >= quality.min_accuracy
    confusion = np.asarray(metrics["confusion_matrix"])
    result = dg.MaterializeResult(
        metadata={
            "version": version,
            "held_out_accuracy": dg.MetadataValue.float(accuracy),
            "log_loss": dg.MetadataValue.float(float(metrics["log_loss"])),
            "train_seconds": dg.MetadataValue.float(round(float(metrics["train_seconds"]), 2)),
            "train_images": int(metrics["n_train"]),
            "held_out_images": int(metrics["n_held_out"]),
            "raw_version": raw["version"],
            "promoted": passed,
            "location": dg.MetadataValue.path(storage.uri(prefix)),
            "hyperparameters": dg.MetadataValue.json(params),
            "confusion_matrix": markdown_image(
                confusion_heatmap(confusion), "confusion matrix (rows: true digit)"
            ),
            **job_meta,
        },
        data_version=dg.DataVersion(version),
        check_results=[
            dg.AssetCheckResult(
                check_name=ACCURACY_CHECK,
                passed=passed,
                metadata={"held_out_accuracy": accuracy, "threshold": quality.min_accuracy},
                description=f"{accuracy:.4f} {'>=' if passed else '<'} {quality.min_accuracy}",
            )
        ],
    )
    # Last, once the metrics are read and the result is built: only then does scoring switch models.
    if passed:
        storage.put_json(
            f"{MODELS_PREFIX}/{CURRENT}",
            {"version": version, "prefix": prefix, "model": f"{prefix}/model", "held_out_accuracy": accuracy},
        )
    else:
        context.log.error(
            f"Model {version} reaches {accuracy:.4f} held-out accuracy, below the threshold {quality.min_accuracy}: "
            "not promoted; scoring keeps using the previous model."
        )
    return result
