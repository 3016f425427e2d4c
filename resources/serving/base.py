"""The serving concern: roll the promoted model out to whatever serves scoring, and say what serves now.

Two implementations of the same behaviour: `LocalModelServing` (local and Azure Batch scoring read the
promoted model folder themselves, so there is nothing to deploy) and
`AzureMLBatchDeploymentServing` (`resources.serving.azureml_batch`: register the MLflow model, update
the batch deployment, wait until it serves the new model). A rollout is idempotent: rolling out the
model already served changes nothing remote.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from resources.storage import ObjectStore


@dataclass(frozen=True)
class PromotedModel:
    """The model `models/mnist/current.json` names: its Dagster version and its MLflow model folder."""

    version: str
    folder: str  # storage prefix of the MLflow model directory (holds `MLmodel`)


@dataclass(frozen=True)
class Rollout:
    """What serves after a rollout. `changed`: False when it was served already and nothing was updated."""

    served: str
    changed: bool
    metadata: Mapping[str, Any] = field(default_factory=dict)


class RolloutFailed(Exception):
    """The serving side refused or failed the update; what served before still serves."""


class ModelServing(dg.ConfigurableResource, ABC):
    """Where the promoted model is served from for scoring."""

    @abstractmethod
    def roll_out(
        self, context: dg.AssetExecutionContext, model: PromotedModel, store: ObjectStore
    ) -> Rollout:
        """Make `model` the model that scoring uses, and return once it does (RolloutFailed otherwise)."""

    @abstractmethod
    def describe(self) -> str:
        """Where scoring's model is served, in words, for metadata and logs."""
