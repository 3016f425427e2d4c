"""The promoted model, served: what scoring uses, rolled out automatically after each promotion."""

import dagster as dg

from resources.serving import ModelServing, PromotedModel
from resources.storage import ObjectStore

from .layout import CURRENT, MODELS_PREFIX
from .model import mnist_model

# Eager (materialize after each materialization of the model, never while it is in progress), but only
# once the model's blocking checks have passed: eager alone does not look at checks, and a model that
# failed its accuracy check was not promoted.
ROLLOUT_CONDITION = (
    dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
).with_label("eager, once the model's blocking checks passed")


@dg.asset(
    group_name="mnist",
    deps=[mnist_model],
    kinds={"mlflow"},
    tags={"layer": "serving"},
    automation_condition=ROLLOUT_CONDITION,
)
def mnist_model_serving(
    context: dg.AssetExecutionContext, storage: ObjectStore, model_serving: ModelServing
) -> dg.MaterializeResult:
    """The promoted model (`models/mnist/current.json`) as the scoring backend serves it.

    With AzureML scoring: the MLflow model registered as a model version (version = the Dagster model
    version) and the batch endpoint's deployment updated to serve it, waited for until it does. Scoring
    checks, before every invocation, that the deployment serves the promoted model; this asset is what
    makes that true after a promotion. Other scoring backends read the model folder themselves, and
    materializing it only records which model serves.

    Materialized automatically after mnist_model, once its blocking accuracy check has passed. A failed
    rollout fails the run (and alerts) and leaves the previously deployed model serving.
    """
    pointer = f"{MODELS_PREFIX}/{CURRENT}"
    if not storage.exists(pointer):
        raise dg.Failure(f"No model has passed the accuracy check yet ({storage.uri(pointer)} is missing).")
    current = storage.get_json(pointer)
    model = PromotedModel(version=str(current["version"]), folder=str(current["model"]).strip("/"))
    if not storage.exists(f"{model.folder}/MLmodel"):
        raise dg.Failure(
            f"The promoted model {model.version} ({storage.uri(pointer)}) names {storage.uri(model.folder)}, "
            "which holds no MLmodel file: it is not an MLflow model folder, so it cannot be served."
        )
    rollout = model_serving.roll_out(context, model, storage)
    return dg.MaterializeResult(
        metadata={
            "model_version": model.version,
            "model_folder": dg.MetadataValue.path(storage.uri(model.folder)),
            "served": rollout.served,
            "changed": rollout.changed,
            **rollout.metadata,
        },
        data_version=dg.DataVersion(model.version),
    )
