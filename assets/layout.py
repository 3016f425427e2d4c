"""Where each asset keeps its data in the object store.

Versioned folders hold immutable data; a small `current.json` pointer, written last and atomically,
says which version is live. A failed or rejected run never moves the pointer, so the previous good
result stays in place.
"""

from __future__ import annotations

RAW_PREFIX = "raw/mnist"
MODELS_PREFIX = "models/mnist"
INFERENCE_PREFIX = "inference"
TRAINING_PREFIX = "training"
PREDICTIONS_PREFIX = "predictions"
CURRENT = "current.json"
BATCH_MARKER = "_SUCCESS"
SCORED_WITH = "_scored_with.json"  # beside predictions: which model/files/code produced them


def raw_version_prefix(version: str) -> str:
    return f"{RAW_PREFIX}/{version}"


def model_version_prefix(version: str) -> str:
    return f"{MODELS_PREFIX}/{version}"


def batch_prefix(batch_id: str) -> str:
    return f"{INFERENCE_PREFIX}/{batch_id}"


def predictions_prefix(batch_id: str) -> str:
    return f"{PREDICTIONS_PREFIX}/{batch_id}"
