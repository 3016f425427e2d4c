"""Model serving: making the promoted model the one that scoring uses (a batch deployment on AzureML)."""

from .base import ModelServing, PromotedModel, Rollout, RolloutFailed
from .local import LocalModelServing

__all__ = ["LocalModelServing", "ModelServing", "PromotedModel", "Rollout", "RolloutFailed"]
