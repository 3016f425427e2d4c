"""Jobs: the main pipeline and the two halves that automation launches on their own.

Each job carries its maximum runtime from the settings (tag `dagster/max_runtime`, seconds from the
run's start): run monitoring terminates a run that reaches it, and terminating a run cancels its
remote job. A launch may give its own (ADF sends its pipeline's `timeout`), which wins over the job's.
"""

from __future__ import annotations

import dagster as dg

from assets.model import mnist_model
from assets.predictions import mnist_predictions
from assets.raw_mnist import raw_mnist
from assets.serving import mnist_model_serving
from orchestration.settings.reliability import TimeoutSettings

# One process per run, not one per step: the steps are sequential and each would otherwise pay
# Python + Dagster start-up again (seconds on a 2-core machine). How many runs of each kind may run
# at once is the assets' concurrency pools' business (orchestration/step_policies.py), so it holds
# for every launch, the UI's Materialize of the assets included.
EXECUTOR = dg.in_process_executor
MAX_RUNTIME_TAG = "dagster/max_runtime"

# Job names, for the sensors and the schedule that launch them.
PIPELINE_JOB = "mnist_pipeline"
TRAIN_JOB = "train_model"
SCORE_JOB = "score_batch"


def build_jobs(timeouts: TimeoutSettings) -> list[dg.UnresolvedAssetJobDefinition]:
    """The three jobs, each with its maximum runtime from the settings."""

    def tags(job: str) -> dict[str, str]:
        return {MAX_RUNTIME_TAG: str(timeouts.for_job(job))}

    return [
        dg.define_asset_job(
            PIPELINE_JOB,
            selection=dg.AssetSelection.assets(
                raw_mnist, mnist_model, mnist_model_serving, mnist_predictions
            ),
            description="Raw MNIST -> trained model -> the model served -> predictions for one inference "
            "batch (the partition).",
            executor_def=EXECUTOR,
            tags=tags(PIPELINE_JOB),
        ),
        dg.define_asset_job(
            TRAIN_JOB,
            selection=dg.AssetSelection.assets(raw_mnist, mnist_model),
            description="Fetch and verify raw MNIST, then train (or reuse) the model and check its accuracy.",
            executor_def=EXECUTOR,
            tags=tags(TRAIN_JOB),
        ),
        dg.define_asset_job(
            SCORE_JOB,
            selection=dg.AssetSelection.assets(mnist_predictions),
            description="Score one inference batch (the partition) with the promoted model.",
            executor_def=EXECUTOR,
            tags=tags(SCORE_JOB),
        ),
    ]
