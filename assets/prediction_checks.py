"""The checks on each batch's predictions: do they look like what the model was trained for?

Three non-blocking checks on every materialization of mnist_predictions, each a warning
(`AssetCheckSeverity.WARN`) when it fails, never a failed run:

- **drift**: the predicted digits' distribution against the training labels' distribution (recorded
  by training in the model's `metrics.json`), as a population stability index (PSI);
- **low confidence**: the share of predictions whose probability is below a cut-off;
- **row count**: one row in `predictions.csv` per image, the images counted from the IDX headers of
  the batch's files (not from what the scoring workload says it scored).

Thresholds come from the `PredictionChecks` resource (settings `MNIST_DRIFT_PSI_THRESHOLD`,
`MNIST_LOW_CONFIDENCE_PROBABILITY`, `MNIST_LOW_CONFIDENCE_MAX_SHARE`).
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import struct
import warnings
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from resources.prediction_checks import PredictionChecks
from resources.storage import ObjectInfo, ObjectStore
from workload.mnist_idx import IMAGES_MAGIC, IdxFormatError

from .pictures import markdown_image, markdown_table, share_comparison

DRIFT_CHECK = "predicted_digits_match_training_distribution"
LOW_CONFIDENCE_CHECK = "low_confidence_share_below_threshold"
ROW_COUNT_CHECK = "one_prediction_per_image"
CHECK_NAMES = (DRIFT_CHECK, LOW_CONFIDENCE_CHECK, ROW_COUNT_CHECK)
DIGITS = tuple(str(d) for d in range(10))
# A share of 0 has no logarithm: shares below this count as this (the usual PSI convention).
SHARE_FLOOR = 1e-4


def check_specs(asset: str, partitions_def: dg.PartitionsDefinition) -> list[dg.AssetCheckSpec]:
    """The three checks of `asset`, one evaluation per partition (inference batch) materialized."""
    descriptions = {
        DRIFT_CHECK: "The predicted digits are distributed like the training labels: their population "
        "stability index (PSI) is at most MNIST_DRIFT_PSI_THRESHOLD. Warns, never blocks.",
        LOW_CONFIDENCE_CHECK: "At most MNIST_LOW_CONFIDENCE_MAX_SHARE of the predictions have a probability "
        "below MNIST_LOW_CONFIDENCE_PROBABILITY. Warns, never blocks.",
        ROW_COUNT_CHECK: "predictions.csv has one row per image in the batch's IDX files (counted from their "
        "headers). Warns, never blocks.",
    }
    # Partitioned checks are a Dagster preview: chosen so that the UI shows each batch's own verdicts.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [
            dg.AssetCheckSpec(
                name,
                asset=asset,
                blocking=False,
                description=descriptions[name],
                partitions_def=partitions_def,
            )
            for name in CHECK_NAMES
        ]


# ---- statistics ---------------------------------------------------------------------------------------


def shares(counts: Sequence[float]) -> list[float]:
    """Each count's share of the total (all zero when the total is zero)."""
    total = float(sum(counts))
    return [c / total if total else 0.0 for c in counts]


def population_stability_index(expected: Sequence[float], actual: Sequence[float]) -> float:
    """PSI = sum over categories of (actual - expected) * ln(actual / expected), on shares.

    `expected` and `actual` are counts or shares per category (each normalized here). 0 means the same
    distribution; by convention below 0.1 is no shift, 0.1-0.25 a slight one, above 0.25 a significant
    one. Shares below `SHARE_FLOOR` count as `SHARE_FLOOR`.
    """
    if len(expected) != len(actual):
        raise ValueError(
            f"PSI compares distributions over the same categories: {len(expected)} != {len(actual)}"
        )
    if not sum(expected) or not sum(actual):
        raise ValueError("PSI needs two non-empty distributions")
    psi = 0.0
    for e, a in zip(shares(expected), shares(actual), strict=True):
        e, a = max(e, SHARE_FLOOR), max(a, SHARE_FLOOR)
        psi += (a - e) * math.log(a / e)
    return psi


# ---- what the checks read -------------------------------------------------------------------------------


def idx_image_count(raw: bytes, source: str) -> int:
    """How many images an IDX image file (gzip'd or plain) holds, read from its header alone."""
    head = raw[:16]
    if raw[:2] == b"\x1f\x8b":
        try:
            head = gzip.GzipFile(fileobj=io.BytesIO(raw)).read(16)
        except (OSError, EOFError, zlib.error) as exc:
            raise IdxFormatError(source, "a readable gzip stream", f"a damaged one ({exc})") from None
    if len(head) < 8:
        raise IdxFormatError(source, "an IDX header of at least 8 bytes", f"{len(head)} bytes")
    magic, count = struct.unpack(">II", head[:8])
    if magic != IMAGES_MAGIC:
        raise IdxFormatError(source, f"the IDX image magic number 0x{IMAGES_MAGIC:08x}", f"0x{magic:08x}")
    return int(count)


@dataclass(frozen=True)
class PredictionRows:
    """What `predictions.csv` holds: its rows, how many predict each digit, and how many are low-confidence."""

    rows: int
    label_counts: list[int]
    low_confidence: int


def read_predictions(data: bytes, cutoff: float) -> PredictionRows:
    """Count the rows of a `predictions.csv` (source_file, index, predicted_label, probability)."""
    counts = [0] * 10
    rows = low = 0
    for row in csv.DictReader(io.StringIO(data.decode())):
        rows += 1
        counts[int(row["predicted_label"])] += 1
        if float(row["probability"]) < cutoff:
            low += 1
    return PredictionRows(rows=rows, label_counts=counts, low_confidence=low)


# ---- the checks ---------------------------------------------------------------------------------------------


def check_results(
    *,
    storage: ObjectStore,
    predictions: str,
    model: dict[str, Any],
    batch: str,
    files: Iterable[ObjectInfo],
    expect: PredictionChecks,
) -> list[dg.AssetCheckResult]:
    """The three checks of one batch's stored predictions (under `predictions`), scored by `model` (the
    promoted model's `current.json` record), for the batch's image `files`."""
    found = read_predictions(
        storage.get_bytes(f"{predictions}/predictions.csv"), expect.low_confidence_probability
    )
    facts: dict[str, dg.RawMetadataValue] = {"batch": batch, "model_version": str(model["version"])}
    metrics = storage.get_json(f"{model['prefix']}/metrics.json")
    return [
        drift_result(found, metrics.get("train_label_counts"), expect.drift_psi_threshold, facts),
        low_confidence_result(found, expect, facts),
        row_count_result(found, storage, files, facts),
    ]


def drift_result(
    found: PredictionRows,
    training_counts: dict[str, int] | None,
    threshold: float,
    facts: dict[str, dg.RawMetadataValue],
) -> dg.AssetCheckResult:
    if not training_counts:
        return dg.AssetCheckResult(
            check_name=DRIFT_CHECK,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"Not evaluated: model {facts['model_version']} records no training label distribution "
            "(its metrics.json has no train_label_counts; models trained since it is recorded do): retrain it.",
            metadata={**facts, "threshold": threshold},
        )
    expected = [int(training_counts[d]) for d in DIGITS]
    if not found.rows:
        return dg.AssetCheckResult(
            check_name=DRIFT_CHECK,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description="Not evaluated: predictions.csv has no rows.",
            metadata={**facts, "threshold": threshold},
        )
    psi = population_stability_index(expected, found.label_counts)
    trained, predicted = shares(expected), shares(found.label_counts)
    passed = psi <= threshold
    return dg.AssetCheckResult(
        check_name=DRIFT_CHECK,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"PSI {psi:.3f} {'<=' if passed else '>'} {threshold:g} over {found.rows} predictions",
        metadata={
            **facts,
            "psi": dg.MetadataValue.float(round(psi, 4)),
            "threshold": dg.MetadataValue.float(threshold),
            "predictions": found.rows,
            "shares": markdown_table(
                ["digit", *DIGITS],
                [
                    ["training", *(f"{100 * s:.1f}%" for s in trained)],
                    ["this batch", *(f"{100 * s:.1f}%" for s in predicted)],
                ],
            ),
            "shares_chart": markdown_image(
                share_comparison(trained, predicted, DIGITS),
                "share of each digit: training (grey), batch (blue)",
            ),
        },
    )


def low_confidence_result(
    found: PredictionRows, expect: PredictionChecks, facts: dict[str, dg.RawMetadataValue]
) -> dg.AssetCheckResult:
    share = found.low_confidence / found.rows if found.rows else 0.0
    passed = share <= expect.low_confidence_max_share
    return dg.AssetCheckResult(
        check_name=LOW_CONFIDENCE_CHECK,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{found.low_confidence} of {found.rows} predictions ({100 * share:.1f}%) have a probability below "
            f"{expect.low_confidence_probability:g}; at most {100 * expect.low_confidence_max_share:g}% expected"
        ),
        metadata={
            **facts,
            "low_confidence_share": dg.MetadataValue.float(round(share, 4)),
            "max_share": dg.MetadataValue.float(expect.low_confidence_max_share),
            "probability_below": dg.MetadataValue.float(expect.low_confidence_probability),
            "low_confidence": found.low_confidence,
            "predictions": found.rows,
        },
    )


def row_count_result(
    found: PredictionRows,
    storage: ObjectStore,
    files: Iterable[ObjectInfo],
    facts: dict[str, dg.RawMetadataValue],
) -> dg.AssetCheckResult:
    per_file: dict[str, int] = {}
    try:
        for info in files:
            per_file[info.name] = idx_image_count(storage.get_bytes(info.name), storage.uri(info.name))
    except IdxFormatError as exc:
        return dg.AssetCheckResult(
            check_name=ROW_COUNT_CHECK,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"Not evaluated: {exc}",
            metadata={**facts, "rows": found.rows},
        )
    images = sum(per_file.values())
    passed = found.rows == images
    return dg.AssetCheckResult(
        check_name=ROW_COUNT_CHECK,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{found.rows} rows for {images} images in {len(per_file)} file(s)"
        + (
            ""
            if passed
            else f": {abs(images - found.rows)} {'missing' if found.rows < images else 'too many'}"
        ),
        metadata={
            **facts,
            "rows": found.rows,
            "images": images,
            "images_per_file": dg.MetadataValue.json(per_file),
        },
    )
