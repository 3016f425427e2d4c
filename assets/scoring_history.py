"""Which model scored each batch: read back from the instance's record of mnist_predictions materializations.

Every materialization of mnist_predictions records the `model_version` that scored its batch. The most
recent ones, one per batch, say which batches are still on an older model: the rescoring sensor reads
them, and each materialization shows them as a table (the asset's page in the UI shows the latest).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg

from .pictures import markdown_table

# Materializations read per query while looking for the most recent distinct batches.
PAGE = 200


@dataclass(frozen=True)
class ScoredBatch:
    """A batch, the model version its latest predictions were made with ("" when not recorded), and when."""

    batch: str
    model_version: str
    scored_at: float | None = None


def recent_batches(instance: dg.DagsterInstance, asset_key: dg.AssetKey, n: int) -> list[ScoredBatch]:
    """The `n` batches materialized most recently, newest first, each with the model of its latest predictions."""
    found: dict[str, ScoredBatch] = {}
    cursor: str | None = None
    while len(found) < n:
        page = instance.fetch_materializations(asset_key, limit=PAGE, cursor=cursor)
        for record in page.records:
            batch = record.partition_key
            materialization = record.asset_materialization
            if batch is None or batch in found or materialization is None:
                continue
            version = materialization.metadata.get("model_version")
            found[batch] = ScoredBatch(
                batch, str(version.value) if version is not None else "", record.timestamp
            )
            if len(found) == n:
                break
        if not page.has_more:
            break
        cursor = page.cursor
    return list(found.values())


def models_table(batches: list[ScoredBatch], promoted: str) -> dg.MetadataValue:
    """A markdown table: each batch, the model that scored it (marked when it is the promoted one), and when."""
    rows = [
        [
            b.batch,
            f"{b.model_version} (promoted)"
            if b.model_version == promoted
            else (b.model_version or "(unknown)"),
            datetime.fromtimestamp(b.scored_at, UTC).strftime("%Y-%m-%d %H:%M UTC") if b.scored_at else "now",
        ]
        for b in batches
    ]
    return markdown_table(["batch", "scored by model", "scored"], rows)
