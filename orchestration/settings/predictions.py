"""What is expected of each batch's predictions, and what happens to predictions when the model changes."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, PositiveFloat

from orchestration.settings.base import EnvironmentSettings, variable

_RECENT = re.compile(r"recent:([1-9][0-9]*)")


def _rescore_policy(value: str) -> str:
    value = value.strip().lower()
    if value != "leave" and not _RECENT.fullmatch(value):
        raise ValueError("expected leave or recent:<N>")
    return value


class PredictionCheckSettings(EnvironmentSettings):
    """Prediction checks: the warnings raised on each batch's predictions, and retraining when drift persists.

    Each materialization of mnist_predictions is checked (non-blocking, severity WARN): the predicted
    digits' distribution against the training labels' (population stability index, PSI), the share of
    low-confidence predictions, and the row count against the images in the batch's IDX headers. A
    failed check warns in the UI and, with MNIST_ALERTS set, is posted like a failed run. See
    docs/operations.md, "Prediction checks".
    """

    drift_psi_threshold: PositiveFloat = variable(
        "MNIST_DRIFT_PSI_THRESHOLD",
        0.25,
        "the drift check warns when the population stability index of the predicted digits against the "
        "training labels exceeds this (0.1: a slight shift, 0.25: a significant one; a batch of n images "
        "drawn from the training distribution itself scores about 9/n)",
    )
    low_confidence_probability: Annotated[float, Field(ge=0.0, le=1.0)] = variable(
        "MNIST_LOW_CONFIDENCE_PROBABILITY",
        0.5,
        "a prediction whose probability is below this is low-confidence",
    )
    low_confidence_max_share: Annotated[float, Field(ge=0.0, le=1.0)] = variable(
        "MNIST_LOW_CONFIDENCE_MAX_SHARE",
        0.05,
        "the low-confidence check warns when more than this share of a batch's predictions is low-confidence",
    )
    drift_retrain_after: Annotated[int, Field(ge=0)] = variable(
        "MNIST_DRIFT_RETRAIN_AFTER",
        0,
        "request a train_model run when the drift check failed on this many consecutive scored batches "
        "(0: never; the sensor drift_retrain_sensor exists only when set)",
    )


class RescoreSettings(EnvironmentSettings):
    """Rescoring: what happens to predictions made by a model that is no longer the promoted one.

    `leave` keeps them as they are: each batch says in its metadata which model scored it. `recent:<N>`
    defines the sensor rescore_on_new_model, which requests a score_batch run for each of the N batches
    scored most recently by another model once a new model is promoted; the runs queue in the
    scoring compute's concurrency pool like any scoring.
    """

    policy: Annotated[str, AfterValidator(_rescore_policy)] = variable(
        "MNIST_RESCORE_ON_NEW_MODEL",
        "leave",
        "when a new model is promoted: leave earlier predictions as they are, or rescore the N batches scored "
        "most recently (recent:<N>)",
        expected="leave or recent:<N>, N a positive whole number",
    )

    @property
    def recent(self) -> int:
        """How many of the most recently scored batches to rescore with a new model (0: leave them)."""
        found = _RECENT.fullmatch(self.policy)
        return int(found.group(1)) if found else 0
