from __future__ import annotations

import dagster as dg
from pydantic import Field


class QualityGate(dg.ConfigurableResource):
    """What a model must reach before it is promoted and used for scoring."""

    min_accuracy: float = Field(default=0.97, ge=0.0, le=1.0)
