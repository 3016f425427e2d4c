"""Serving for the scoring backends that read the promoted model folder themselves (local, Azure Batch)."""

from __future__ import annotations

import dagster as dg

from resources.storage import ObjectStore

from .base import ModelServing, PromotedModel, Rollout


class LocalModelServing(ModelServing):
    """Nothing to deploy: each scoring task reads the model folder that `models/mnist/current.json` names.

    The rollout only checks that the folder is an MLflow model, so a rollout says the same thing on
    every backend: this model is what scoring uses now.
    """

    def roll_out(
        self, context: dg.AssetExecutionContext, model: PromotedModel, store: ObjectStore
    ) -> Rollout:
        context.log.info(f"{self.describe()}: model {model.version} ({store.uri(model.folder)}) serves as is")
        return Rollout(served=model.folder, changed=False, metadata={"serving": self.describe()})

    def describe(self) -> str:
        return "scoring reads the promoted model folder (models/mnist/current.json); nothing to deploy"
