"""Score a batch of MNIST-shaped images with a trained model; one CSV of predictions per batch."""

from __future__ import annotations

import csv
import json
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np

from .mnist_idx import IdxFormatError, parse_images
from .report import Reporter

IMAGE_SUFFIXES = (".idx3-ubyte", ".idx3-ubyte.gz", "-idx3-ubyte", "-idx3-ubyte.gz", ".idx", ".idx.gz")
MARKERS = ("_SUCCESS",)
SCORE_CHUNK = 256  # measured: small chunks stay in warm memory (see features.CHUNK)


def load_model(model_dir: Path) -> Any:
    """Load the sklearn model from an MLflow model directory without importing mlflow (it is slow)."""
    import sys

    mlmodel = model_dir / "MLmodel"
    if not mlmodel.is_file():
        raise FileNotFoundError(f"{model_dir}: not an MLflow model directory (no MLmodel file)")
    code = model_dir / "code"
    if code.is_dir() and str(code) not in sys.path:
        sys.path.append(str(code))
    with (model_dir / "model.pkl").open("rb") as fh:
        return pickle.load(fh)


def find_image_files(batch_dir: Path) -> list[Path]:
    files = sorted(p for p in batch_dir.rglob("*") if p.is_file())
    images = [p for p in files if p.name.endswith(IMAGE_SUFFIXES)]
    others = [p.relative_to(batch_dir).as_posix() for p in files if p not in images and p.name not in MARKERS]
    if others:
        raise IdxFormatError(
            str(batch_dir / others[0]),
            f"an IDX image file (name ending in one of {', '.join(IMAGE_SUFFIXES)})",
            f"{len(others)} other file(s): {', '.join(others[:5])}",
        )
    if not images:
        raise IdxFormatError(str(batch_dir), "at least one IDX image file in the batch", "none (empty batch)")
    return images


def score(model_dir: Path, batch_dir: Path, out_dir: Path, report: Reporter) -> dict[str, Any]:
    files = find_image_files(batch_dir)
    # Validate every file before scoring any, so a bad file fails the batch with nothing written.
    batches = [
        (
            p.relative_to(batch_dir).as_posix(),
            parse_images(p.read_bytes(), p.relative_to(batch_dir).as_posix()),
        )
        for p in files
    ]
    total = sum(len(images) for _, images in batches)
    report.info(f"scoring {total} images from {len(files)} file(s)")
    model = load_model(model_dir)
    started = time.perf_counter()
    labels: list[np.ndarray] = []
    probs: list[np.ndarray] = []
    for _, images in batches:
        flat = images.reshape(len(images), -1)
        for start in range(0, len(flat), SCORE_CHUNK):
            proba = model.predict_proba(flat[start : start + SCORE_CHUNK])
            labels.append(model.classes_[proba.argmax(1)])
            probs.append(proba.max(1))
    seconds = time.perf_counter() - started
    all_labels = np.concatenate(labels)
    all_probs = np.concatenate(probs)
    images_per_second = total / seconds if seconds > 0 else float("inf")
    report.metric(images=total, images_per_second=round(images_per_second), seconds=round(seconds, 3))

    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "predictions.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["source_file", "index", "predicted_label", "probability"])
        row = 0
        for name, images in batches:
            for i in range(len(images)):
                writer.writerow([name, i, int(all_labels[row]), f"{all_probs[row]:.5f}"])
                row += 1
    summary = {
        "images": total,
        "files": [name for name, _ in batches],
        "label_counts": {str(d): int((all_labels == d).sum()) for d in range(10)},
        "mean_probability": float(all_probs.mean()),
        "low_confidence": int((all_probs < 0.5).sum()),
        "seconds": seconds,
        "images_per_second": images_per_second,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
