"""Jobs: the main pipeline and the two halves that automation launches on their own."""

from __future__ import annotations

import dagster as dg

from assets.model import mnist_model
from assets.predictions import mnist_predictions
from assets.raw_mnist import raw_mnist
from assets.serving import mnist_model_serving

# One process per run, not one per step: the steps are sequential and each would otherwise pay
# Python + Dagster start-up again (seconds on a 2-core machine). How many runs of each kind may run
# at once is the assets' concurrency pools' business (assets/, and `pool_limits` in the instance's
# dagster.yaml), so it holds for every launch, the UI's Materialize of the assets included.
EXECUTOR = dg.in_process_executor

mnist_pipeline = dg.define_asset_job(
    "mnist_pipeline",
    selection=dg.AssetSelection.assets(raw_mnist, mnist_model, mnist_model_serving, mnist_predictions),
    description="Raw MNIST -> trained model -> the model served -> predictions for one inference batch "
    "(the partition).",
    executor_def=EXECUTOR,
)
train_model = dg.define_asset_job(
    "train_model",
    selection=dg.AssetSelection.assets(raw_mnist, mnist_model),
    description="Fetch and verify raw MNIST, then train (or reuse) the model and check its accuracy.",
    executor_def=EXECUTOR,
)
score_batch = dg.define_asset_job(
    "score_batch",
    selection=dg.AssetSelection.assets(mnist_predictions),
    description="Score one inference batch (the partition) with the promoted model.",
    executor_def=EXECUTOR,
)

JOBS = [mnist_pipeline, train_model, score_batch]
