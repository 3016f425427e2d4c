from __future__ import annotations

import dagster as dg
from pydantic import Field


class PredictionChecks(dg.ConfigurableResource):
    """What each batch's predictions are expected to look like; a batch that falls short gets a warning.

    `drift_psi_threshold`: the largest population stability index of the predicted digits against the
    training labels that is not a drift. `low_confidence_probability`: below it a prediction is
    low-confidence. `low_confidence_max_share`: the largest share of low-confidence predictions that is
    not a warning.
    """

    drift_psi_threshold: float = Field(default=0.25, gt=0.0)
    low_confidence_probability: float = Field(default=0.5, ge=0.0, le=1.0)
    low_confidence_max_share: float = Field(default=0.05, ge=0.0, le=1.0)
