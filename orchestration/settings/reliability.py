"""Unattended running: how a step retries, how long a run may last, how many runs share a compute target.

Three concerns, one model each:

- `RetrySettings`: the `RetryPolicy` of every asset step (exponential backoff with jitter). Only
  failures that may pass retry: a remote job lost to the infrastructure, a transient Azure error that
  outlasted azure-core's own retries, a lost connection. Bad input, a failing workload and a 4xx never
  retry (`dg.Failure(allow_retries=False)`).
- `TimeoutSettings`: each job's maximum runtime, the run tag `dagster/max_runtime` that run monitoring
  enforces; reaching it terminates the run, which cancels its remote job.
- `PoolSettings`: how many runs may use one compute target at once (the concurrency pool named after
  the target: `orchestration.step_policies`).
"""

from __future__ import annotations

from typing import Annotated, Literal

import dagster as dg
from pydantic import Field

from orchestration.settings.base import EnvironmentSettings, variable

DAY = 86_400


class RetrySettings(EnvironmentSettings):
    """Step retries: what Dagster's RetryPolicy on every asset does after a failure that may pass."""

    max_retries: Annotated[int, Field(ge=0, le=10)] = variable(
        "MNIST_RETRY_MAX", 3, "retries of a step after a transient failure (0: never retry)"
    )
    delay_seconds: Annotated[float, Field(ge=0, le=3600)] = variable(
        "MNIST_RETRY_DELAY_SECONDS", 30.0, "wait before the first retry; doubles with each retry"
    )
    jitter: Literal["full", "plus_minus", "none"] = variable(
        "MNIST_RETRY_JITTER",
        "plus_minus",
        "random variation of the wait, so that steps failed together do not retry together",
    )

    def policy(self) -> dg.RetryPolicy | None:
        """The RetryPolicy of every asset step (None when retries are off)."""
        if not self.max_retries:
            return None
        jitter = {"full": dg.Jitter.FULL, "plus_minus": dg.Jitter.PLUS_MINUS, "none": None}[self.jitter]
        return dg.RetryPolicy(
            max_retries=self.max_retries,
            delay=self.delay_seconds,
            backoff=dg.Backoff.EXPONENTIAL,
            jitter=jitter,
        )


Seconds = Annotated[int, Field(ge=60, le=7 * DAY)]


class TimeoutSettings(EnvironmentSettings):
    """The longest a run of each job may last, from its start (tag `dagster/max_runtime`, enforced by
    run monitoring). A launch may set its own tag (ADF sends its pipeline's `timeout`)."""

    mnist_pipeline: Seconds = variable(
        "MNIST_MAX_RUNTIME_PIPELINE_SECONDS", DAY, "longest run of mnist_pipeline, in seconds"
    )
    train_model: Seconds = variable(
        "MNIST_MAX_RUNTIME_TRAIN_SECONDS", DAY, "longest run of train_model, in seconds"
    )
    score_batch: Seconds = variable(
        "MNIST_MAX_RUNTIME_SCORE_SECONDS", 6 * 3600, "longest run of score_batch, in seconds"
    )

    def for_job(self, job_name: str) -> int:
        """The maximum runtime of a job, in seconds."""
        return int(getattr(self, job_name))


class PoolSettings(EnvironmentSettings):
    """How many runs may use one compute target at once.

    Each compute target (an AzureML cluster, pipeline endpoint or batch endpoint, an Azure Batch pool or
    account, the local machine's training or scoring) is a concurrency pool; the assets that run on it
    share its limit. A target that ingest or training uses is limited to one run: two trainings would
    move the raw data and the promoted model under each other. Other targets take this limit.
    """

    scoring_limit: Annotated[int, Field(ge=1, le=1000)] = variable(
        "MNIST_POOL_SCORING_LIMIT",
        8,
        "runs that may score at once on one compute target (a target training uses: 1)",
    )
