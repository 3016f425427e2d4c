"""Where each asset keeps its data in the object store.

Versioned folders hold immutable data; a small `current.json` pointer, written last and atomically,
says which version is live. A failed or rejected run never moves the pointer, so the previous good
result stays in place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resources.storage import ObjectInfo

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


def batch_files_digest(objects: Iterable[ObjectInfo]) -> str:
    """Which files an inference batch holds, as scoring reads them: a digest of the name and etag of
    every object in the batch's folder but its completion marker. Another upload of any file changes it."""
    files = sorted(f"{o.name}@{o.etag}" for o in objects if o.name.rsplit("/", 1)[-1] != BATCH_MARKER)
    return hashlib.sha256("\n".join(files).encode()).hexdigest()[:16]


def scored_with(version: str, model_version: str, files: Iterable[ObjectInfo]) -> dict[str, Any]:
    """The `SCORED_WITH` record kept beside a batch's predictions: the predictions' version (model, scoring
    code and files), the model's, and `batch_files_digest` of the files scored, by which the inference
    sensor tells that a batch's current files were scored already."""
    return {"version": version, "model": model_version, "files": batch_files_digest(files)}
